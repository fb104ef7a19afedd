"""Faults, with `search/run.py` as a real subprocess: a trial that diverges (set up from the
space file alone) is retried `max_failures` times, then recorded as errored while the search
finishes; an image that becomes unreadable while a trial trains fails that trial with one line
naming the file, and nothing else is lost. (Signals and a killed driver:
`test_search_interrupts.py`.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from search_helpers import (
    METRIC,
    RUN_SCRIPT,
    load_study,
    output_tail,
    ray_scope,
    ray_trial_states,
    read_results,
    read_trials_csv,
    run_cli,
    session_cache,
    start_cli,
    trial_dirs,
    write_space,
)

pytestmark = pytest.mark.slow

# An absurd learning rate makes the tiny DETR's boxes NaN within two optimizer steps, even
# with the default gradient clipping (Adam's step size does not depend on the gradient norm):
# detr_core's loss raises DivergedTrainingError. Sampler seed 0 draws both values.
DIVERGING_LR = 1.0e30
GOOD_LR = 1.0e-3


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_cache(tmp_path_factory)


def test_diverging_trial_is_retried_then_errored_and_the_search_finishes(
        tmp_path: Path, cache: Path) -> None:
    from optuna.trial import TrialState

    name = "faults"
    space = write_space(
        tmp_path / "space.yaml", name,
        {"training_args.learning_rate": {"choice": [DIVERGING_LR, GOOD_LR]}},
        num_samples=2, max_concurrent=2, max_failures=1, seed=0)
    with ray_scope(cache) as scope:
        proc = run_cli(RUN_SCRIPT, ["--space", space, "--storage", tmp_path / "results",
                                    "--no-dashboard"], scope.env)
        assert proc.returncode == 0, output_tail(proc)
        scope.assert_no_leftovers()
    exp = tmp_path / "results" / name
    rows = {r["training_args.learning_rate"]: r for r in read_trials_csv(exp)}
    assert set(rows) == {repr(DIVERGING_LR), repr(GOOD_LR)}, rows
    bad, good = rows[repr(DIVERGING_LR)], rows[repr(GOOD_LR)]
    assert bad["status"] == "errored"
    assert "DivergedTrainingError" in bad["error"] and "NaN" in bad["error"], bad
    assert bad[f"best_{METRIC}"] == ""
    assert good["status"] == "completed" and good["error"] == ""
    assert float(good[f"best_{METRIC}"]) > 0
    assert "1 completed, 1 errored" in proc.stdout

    # max_failures: 1 -> the trial ran twice before Ray gave up on it
    states = ray_trial_states(exp)
    assert states[bad["trial_id"]]["status"] == "ERROR"
    assert states[bad["trial_id"]]["num_failures"] == 2
    assert states[good["trial_id"]]["status"] == "TERMINATED"
    assert states[good["trial_id"]]["num_failures"] == 0
    bad_dir = next(d for d in trial_dirs(exp) if f"_{bad['trial_id']}_" in d.name)
    error_text = (bad_dir / "error.txt").read_text()
    assert error_text.count("Failure # ") == 2, error_text
    assert "Failure # 1 " in error_text and "Failure # 2 " in error_text
    assert error_text.count("DivergedTrainingError") >= 2

    # the winner is the clean trial; Optuna saw the crash as FAIL
    assert "best_config.yaml" in proc.stdout
    assert f"winner {good['trial_id']}" in proc.stdout
    study = load_study(exp, name)
    states_by_lr = {t.params["training_args.learning_rate"]: t.state for t in study.trials}
    assert states_by_lr == {DIVERGING_LR: TrialState.FAIL, GOOD_LR: TrialState.COMPLETE}


def _coco_dataset(root: Path) -> dict[str, dict[str, str]]:
    """A small COCO dataset of real PNG files the test may break (not the shared cache)."""
    from conftest import CocoWriter

    writer = CocoWriter(root)
    splits = {}
    for split, count in (("train", 32), ("val", 8)):
        images = [{"id": i} for i in range(1, count + 1)]
        anns = [{"image_id": i, "category_id": 1 + i % 2, "bbox": [8, 6, 24, 20]}
                for i in range(1, count + 1)]
        paths = writer(split, images, anns, {1: "a", 2: "b"})
        splits[split] = {"annotations": paths.annotations, "images": paths.images}
    return splits


def test_image_unreadable_during_training_errors_that_trial_only(
        tmp_path: Path, cache: Path) -> None:
    """Trial 1 finishes; while trial 2 trains, one of its images is truncated on disk: trial 2
    fails with the one line naming the file and image id, the search still exports trial 1."""
    from optuna.trial import TrialState

    name = "unreadable"
    max_steps = 60
    base = {
        "seed": 42, "data": _coco_dataset(tmp_path / "coco"),
        "model": {"preset": "tiny", "image_size": 64},
        "training_args": {"max_steps": max_steps, "logging_steps": 2, "learning_rate": 1e-3,
                          "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8},
    }
    (tmp_path / "run.yaml").write_text(json.dumps(base))  # JSON is YAML
    space = tmp_path / "space.yaml"
    space.write_text(json.dumps({
        "experiment": {"name": name, "num_samples": 2, "max_concurrent": 1,
                       "scheduler": {"max_t": max_steps, "grace_period": max_steps},
                       "searcher": {"seed": 0, "n_startup_trials": 2}},
        "base": "run.yaml",
        "space": {"training_args.learning_rate": {"loguniform": [3.0e-4, 1.0e-3]}},
    }))
    victim = tmp_path / "coco" / "train" / "5.png"
    exp = tmp_path / "results" / name
    with ray_scope(cache) as scope:
        log = tmp_path / "search.log"
        proc = start_cli(RUN_SCRIPT, ["--space", space, "--storage", tmp_path / "results",
                                      "--no-dashboard"], scope.env, log)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:  # trial 2 (trial 1 ended) has reported
                dirs = trial_dirs(exp) if exp.is_dir() else []
                if len(dirs) == 2 and all(read_results(d) for d in dirs):
                    break
                assert proc.poll() is None, output_tail(log.read_text(errors="replace"))
                time.sleep(0.1)
            victim.write_bytes(victim.read_bytes()[:100])
            assert proc.wait(timeout=300) == 0, output_tail(log.read_text(errors="replace"))
        finally:
            if proc.poll() is None:
                proc.kill()
        scope.assert_no_leftovers()
    output = log.read_text(errors="replace")
    rows = read_trials_csv(exp)
    statuses = sorted(r["status"] for r in rows)
    assert statuses == ["completed", "errored"], rows
    good = next(r for r in rows if r["status"] == "completed")
    bad = next(r for r in rows if r["status"] == "errored")
    expected = (f"{tmp_path / 'coco' / 'train.json'}: image id 5: image file {victim} cannot "
                "be read during training: ")
    assert expected in bad["error"], bad["error"]
    assert expected in output  # the console's "errored" line carries it too
    assert int(bad["last_step"]) < max_steps
    # nothing else is lost: the finished trial won, with its model, config and report
    assert f"winner {good['trial_id']}" in output
    assert (exp / "best_config.yaml").is_file() and (exp / "best_model" / "config.json").is_file()
    assert "1 completed, 1 errored" in (exp / "REPORT.md").read_text()
    study = load_study(exp, name)
    assert sorted(t.state.name for t in study.trials) == sorted(
        [TrialState.COMPLETE.name, TrialState.FAIL.name])
