"""`search/export.py --compare`: COMPARE.md over a sequence of searches (fake experiment folders
on disk, read back like the export reads them; the CLI in-process)."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import pytest
import yaml
from search_helpers import FAKE_SPEC, fake_params, write_fake_experiment, write_fake_trial

from search.export import main
from search.lineage.warm_start import plan_warm_start
from search.results.compare import best_so_far, read_search
from search.results.warm_trials import write_warm_start_record
from search.space.spec import SearchSpec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sequence(tmp_path: Path) -> tuple[Path, Path]:
    """`iou` (the six-trial fake) and `iou-2`, warm-started from it, narrowing the learning
    rate, with two trials of its own (one better than anything before)."""
    first = write_fake_experiment(tmp_path / "results" / "iou")
    (first / "test_metrics.json").write_text(json.dumps(
        {"map_50": 0.71, "map": 0.4, "recall": 0.9, "precision": 0.8}))
    raw = copy.deepcopy(FAKE_SPEC)
    raw["name"] = "iou-2"
    raw["space"]["training_args.learning_rate"] = {"loguniform": [1e-4, 1e-3]}
    second = tmp_path / "results" / "iou-2"
    second.mkdir()
    (second / "search_spec.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    record = plan_warm_start(SearchSpec.from_yaml_dict(raw, "x"), [str(first)])
    write_warm_start_record(second, record)
    write_fake_trial(second, 0, "ccccc_00000", (fake_params("ciou", True, 5e-4, 0.1, 4), 1200,
                                                [(300, 0.2), (600, 0.05)], True, False, False))
    write_fake_trial(second, 1, "ccccc_00001", (fake_params("giou", True, 2e-4, 0.1, 4), 1200,
                                                [(300, 0.3)], True, False, False))
    return first, second


def test_compute_counts_each_search_s_own_trials_and_best_so_far_runs_across_them(
        sequence: tuple[Path, Path]) -> None:
    searches = [read_search(str(p)) for p in sequence]
    assert [s.compute for s in searches] == [1500 + 1200 + 300 + 300 + 300, 600 + 300]
    assert [len(s.trials) for s in searches] == [6, 2 + 2]  # two warm-start trials taken
    assert searches[1].winner.trial_id == "ccccc_00000"
    points = best_so_far(searches)
    assert points[-1] == (3600 + 900, 0.05, 1)
    assert [p[1] for p in points if p[2] == 0][-1] == 0.10  # not the errored trial's 0.05
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(points))


def test_compare_writes_the_versions_table_and_the_chart(sequence: tuple[Path, Path],
                                                         tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "reports"
    assert main(["--compare", *map(str, sequence), "--out", str(out)]) == 0
    assert f"comparison: {out / 'COMPARE.md'}" in capsys.readouterr().out
    report = (out / "COMPARE.md").read_text()
    lines = [line for line in report.splitlines() if line.startswith("| 1 ") or
             line.startswith("| 2 ")]
    assert "| 1 | `" in lines[0] and "| 3,600 | 3,600 | 0.1 | 0.1 |" in lines[0]
    assert "| 0.710 |" in lines[0]
    assert "2 + 2 warm-start" in lines[1] and "| 900 | 4,500 | 0.05 | 0.05 |" in lines[1]
    assert "`training_args.learning_rate` loguniform [0.0001, 0.001] (log scale)" in report
    assert "![best so far](compare_plots/best_so_far.png)" in report
    assert (out / "compare_plots" / "best_so_far.png").read_bytes()[:8] == PNG_SIGNATURE


def test_compare_defaults_to_the_folder_of_the_first_experiment(
        sequence: tuple[Path, Path]) -> None:
    assert main(["--compare", *map(str, sequence)]) == 0
    assert (sequence[0].parent / "COMPARE.md").is_file()


def test_compare_refuses_a_folder_that_is_not_an_experiment(
        sequence: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "notes").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["--compare", str(sequence[0]), str(tmp_path / "notes"), "--out",
              str(tmp_path / "reports")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a search experiment folder" in err[0]
    assert not (tmp_path / "reports").exists()
