"""`--storage file:///...`: a real search (one tiny trial, local Ray) on a `file://` URI goes
through the same `pyarrow.fs` layer as `s3://` and leaves every output there, the Optuna journal
included (it once died at start with a FileNotFoundError from the journal path)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from search_helpers import (
    RUN_SCRIPT,
    load_study,
    output_tail,
    ray_scope,
    read_trials_csv,
    run_cli,
    session_cache,
    write_space,
)

pytestmark = pytest.mark.slow


def test_a_search_on_a_file_uri_writes_every_output_there(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    space = write_space(tmp_path / "space.yaml", "uri",
                        {"training_args.learning_rate": {"loguniform": [1.0e-4, 3.0e-3]}},
                        num_samples=1, epochs=1)
    root = tmp_path / "storage"
    with ray_scope(session_cache(tmp_path_factory)) as scope:
        proc = run_cli(RUN_SCRIPT, ["--space", space, "--storage", f"file://{root}",
                                    "--no-dashboard", "--report-dir", tmp_path / "report"],
                       scope.env)
        assert proc.returncode == 0, output_tail(proc)
        scope.assert_no_leftovers()
    assert "Traceback" not in proc.stderr
    exp = root / "uri"
    assert f"report:      file://{exp}/REPORT.md" in proc.stdout
    for name in ("search_spec.yaml", "prepared_data.json", "optuna_study.log",
                 "best_config.yaml", "trials.csv", "REPORT.md", "test_metrics.json",
                 "best_model/config.json", "plots/metric_curves.png"):
        assert (exp / name).is_file(), name
    assert read_trials_csv(exp)[0]["status"] == "completed"
    assert set(yaml.safe_load((exp / "best_config.yaml").read_text())["data"]) == {"synthetic"}
    assert len(load_study(exp, "uri").trials) == 1
    assert (tmp_path / "report" / "REPORT.md").read_text() == (exp / "REPORT.md").read_text()
