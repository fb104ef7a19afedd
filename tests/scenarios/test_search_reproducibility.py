"""`best_config.yaml` reproduces the winner, and `--final-seeds` really varies the seed.

One real search (`search/run.py`'s `main` in this process, real Ray): two trials one after
the other, so the second runs on the reused actor of the first, 100 optimizer steps each, then
`--final-seeds 2` (the finalists stage with the winner alone: two fresh runs of its
configuration, seeds 43 and 44, in the stage's own Tune experiment). `best_config.yaml` and
`best_model/` are the better of those two runs. Afterwards the experiment folder is moved away
except `best_config.yaml`, and `detr_core.train` trains from that file alone into a
fresh folder (no checkpoint to resume from): its evaluation curve equals that run's reported
curve to 1e-6. The search trial that lost is rebuilt the same way, so a trial run on a fresh
actor and one on a reused actor are both covered. The two fresh runs' curves differ from each
other.

The search runs on a `file://` storage URI (with `--report-dir`): it goes through the same
`pyarrow.fs` layer as `s3://` and must leave every output there, the Optuna journal included
(it once died at start with a FileNotFoundError from the journal path).

Its trials train with averaged weights (`ema: {}`) and the search ranks them by
`eval_ema_loss_bbox`: the averaged metrics reach Tune at every evaluation, pick the best step,
the exported `best_model/` is the averaged checkpoint, and the rerun reproduces them too.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from search_helpers import (
    load_study,
    output_tail,
    ray_scope,
    read_results,
    read_trials_csv,
    run_main_in_process,
    session_cache,
    trial_dirs,
    write_space,
)

from search.run import main as run_main

pytestmark = pytest.mark.slow

NAME = "repro"
CURVE_KEYS = ("eval_loss", "eval_loss_bbox", "eval_loss_iou", "eval_loss_ce", "eval_map_50",
              "eval_recall", "eval_precision", "train_loss", "eval_ema_loss_bbox",
              "eval_ema_map_50")
METRIC = "eval_ema_loss_bbox"


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return (a is None or (isinstance(a, float) and math.isnan(a))) and \
               (b is None or (isinstance(b, float) and math.isnan(b)))
    return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-6)


def _assert_same_curve(rows: list[dict[str, Any]], reported: list[dict[str, Any]]) -> None:
    assert [r["step"] for r in rows] == [r["step"] for r in reported]
    for mine, theirs in zip(rows, reported, strict=True):
        for key in CURVE_KEYS:
            assert _same(mine[key], theirs[key]), (mine["step"], key, mine[key], theirs[key])


@pytest.fixture(scope="module")
def search_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Path]:
    """(experiment folder, the finished `run.py` process, the `--report-dir` copy)."""
    root = tmp_path_factory.mktemp("repro")
    space = write_space(
        root / "space.yaml", NAME,
        {"training_args.learning_rate": {"loguniform": [3.0e-4, 3.0e-3]},
         "iou_loss": {"choice": ["giou", "diou"]}},
        num_samples=2, max_concurrent=1, grace_period=100, max_t=100, epochs=25,
        logging_steps=25, metric=METRIC,
        extra_overrides={"augmentation.train": [{"HorizontalFlip": {"p": 0.5}},
                                                {"ColorJitter": {"brightness": 0.3, "p": 0.8}}],
                         "ema": {}})
    with ray_scope(session_cache(tmp_path_factory)) as scope:
        proc = run_main_in_process(run_main, ["--space", space, "--storage",
                                              f"file://{root / 'results'}", "--no-dashboard",
                                              "--final-seeds", "2", "--report-dir",
                                              root / "report"], scope.env)
        assert proc.returncode == 0, output_tail(proc)
        scope.assert_no_leftovers()
    return root / "results" / NAME, proc, root / "report"


@pytest.fixture(scope="module")
def search(search_run: tuple[Path, Any, Path]) -> Path:
    return search_run[0]


def test_a_search_on_a_file_uri_writes_every_output_there(
        search_run: tuple[Path, Any, Path]) -> None:
    exp, proc, report = search_run
    assert "Traceback" not in proc.stderr
    assert f"report:      file://{exp}/REPORT.md" in proc.stdout
    for name in ("search_spec.yaml", "prepared_data.json", "optuna_study.log",
                 "best_config.yaml", "trials.csv", "REPORT.md", "test_metrics.json",
                 "best_model/config.json", "plots/metric_curves.png", "finalists.json"):
        assert (exp / name).is_file(), name
    runs = trial_dirs(exp / "finalists")
    assert len(runs) == 2 and all((r / "test_metrics.json").is_file() for r in runs)
    assert "## Finalists" in (exp / "REPORT.md").read_text()
    assert {r["status"] for r in read_trials_csv(exp)} == {"completed"}
    assert set(yaml.safe_load((exp / "best_config.yaml").read_text())["data"]) == {"synthetic"}
    assert len(load_study(exp, NAME).trials) == 2
    assert (report / "REPORT.md").read_text() == (exp / "REPORT.md").read_text()


def test_averaged_weights_reach_tune_and_the_export(search: Path) -> None:
    """Every reported result has the eval_ema_* metrics; ranking, best step and best_model/
    follow the averaged metric, and best_model/ is the checkpoint's averaged weights."""
    import json

    for trial_dir in trial_dirs(search):
        results = read_results(trial_dir)
        assert [r["step"] for r in results] == [25, 50, 75, 100]
        assert all(METRIC in r and "eval_ema_map_50" in r and "eval_precision" in r
                   for r in results)
        values = [r[METRIC] for r in results]
        assert results[-1]["best_step"] == results[values.index(min(values))]["step"]
    rows = read_trials_csv(search)
    assert [float(r[f"best_{METRIC}"]) for r in rows] == sorted(
        float(r[f"best_{METRIC}"]) for r in rows)
    assert "eval_loss_bbox" in rows[0]  # the diary's metric beside the objective
    source = json.loads((search / "best_model" / "export_source.json").read_text())
    assert source["metric"] == METRIC and source["checkpoint"].endswith("/ema")
    chosen = read_results(_chosen_run(search))
    assert source["step"] == chosen[-1]["best_step"]
    assert yaml.safe_load((search / "best_config.yaml").read_text())["ema"] == {
        "decay": 0.999, "warmup_power": 0.75}


def _chosen_run(search: Path) -> Path:
    """The finalist run `best_model/` was copied from."""
    import json

    source = json.loads((search / "best_model" / "export_source.json").read_text())
    assert source["checkpoint"].startswith("finalists/"), source
    return search / source["checkpoint"].split("/checkpoint_")[0]


def test_best_config_alone_reproduces_the_winners_curve(search: Path, tmp_path: Path) -> None:
    from detr_core.config.run_config import load_run_config
    from detr_core.train import train_run
    from detr_core.training.events import read_eval_history
    from search.results.reading import load_trials
    from search.results.winner import build_best_config
    from search.space.spec import read_spec_file

    rows = read_trials_csv(search)
    winner_id = rows[0]["trial_id"]
    curves = {read_results(d)[0]["trial_id"]: read_results(d) for d in trial_dirs(search)}
    assert len(curves) == 2 and all(c[-1]["step"] == 100 for c in curves.values())
    spec = read_spec_file(search)
    trials = {t.trial_id: t for t in load_trials(search, spec)}
    other_config = build_best_config(spec, trials[next(i for i in curves if i != winner_id)])

    winner_curve = read_results(_chosen_run(search))
    assert [r["step"] for r in winner_curve] == [25, 50, 75, 100]
    best = tmp_path / "best_config.yaml"
    shutil.copy(search / "best_config.yaml", best)
    assert yaml.safe_load(best.read_text())["seed"] == winner_curve[0]["config"]["seed"]
    assert yaml.safe_load(best.read_text())["num_threads"] == 1  # the trial's own threads
    away = tmp_path / "moved-away"
    shutil.move(search, away)  # nothing of the search is left to reuse
    try:
        train_run(load_run_config(best), tmp_path / "rerun", evaluate_test=False)
    finally:
        shutil.move(away, search)  # the module's other test reads it
    _assert_same_curve(read_eval_history(tmp_path / "rerun"), winner_curve)

    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(other_config, sort_keys=False))
    train_run(load_run_config(other), tmp_path / "rerun-other", evaluate_test=False)
    loser_id = next(i for i in curves if i != winner_id)
    _assert_same_curve(read_eval_history(tmp_path / "rerun-other"), curves[loser_id])


def test_final_seeds_get_their_own_streams(search: Path) -> None:
    runs = sorted((read_results(d) for d in trial_dirs(search / "finalists")),
                  key=lambda r: r[0]["config"]["seed"])
    assert [r[0]["config"] for r in runs] == [{"finalist": 1, "seed": 43},
                                              {"finalist": 1, "seed": 44}]
    first, second = runs
    assert [r["step"] for r in first] == [r["step"] for r in second] == [25, 50, 75, 100]
    differing = [r["step"] for r, q in zip(first, second, strict=True)
                 if not _same(r["eval_loss"], q["eval_loss"])
                 and not _same(r["train_loss"], q["train_loss"])]
    assert differing == [25, 50, 75, 100]
