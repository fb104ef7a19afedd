"""Faults, with `search/run.py` as a real subprocess, in one search of three trials run one
after the other: a trial that diverges (set up from the space file alone) is retried
`max_failures` times, then recorded as errored; an image that becomes unreadable while a later
trial trains fails that trial with one line naming the file; the search finishes and exports
the clean trial. (Signals and a killed driver: `test_search_interrupts.py`.)
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
    read_json_if_whole,
    read_results,
    read_trials_csv,
    session_cache,
    start_cli,
    trial_dirs,
)

pytestmark = pytest.mark.slow

# An absurd learning rate makes the tiny DETR's boxes NaN within two optimizer steps, even
# with the default gradient clipping (Adam's step size does not depend on the gradient norm):
# detr_core's loss raises DivergedTrainingError. Sampler seed 1 draws the three values in the
# order GOOD, DIVERGING, VICTIM (one random startup trial each).
DIVERGING_LR = 1.0e30
GOOD_LR = 1.0e-3
VICTIM_LR = 5.0e-4
SAMPLER_SEED = 1
MAX_STEPS = 40


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


def _trial_dir_with_lr(exp: Path, lr: float) -> Path | None:
    for folder in trial_dirs(exp) if exp.is_dir() else []:
        params = read_json_if_whole(folder / "params.json")
        if params is not None and params.get("training_args.learning_rate") == lr:
            return folder
    return None


def test_a_diverging_trial_and_an_unreadable_image_error_their_trials_only(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Trial 1 finishes; trial 2 diverges, is retried once, errors; while trial 3 trains, one
    of its images is truncated on disk: trial 3 fails with the one line naming the file and
    image id; the search still exports trial 1, and Optuna saw both crashes as FAIL."""
    from optuna.trial import TrialState

    cache = session_cache(tmp_path_factory)
    name = "faults"
    base = {
        "seed": 42, "data": _coco_dataset(tmp_path / "coco"),
        "model": {"preset": "tiny", "image_size": 64},
        "training_args": {"max_steps": MAX_STEPS, "logging_steps": 2, "learning_rate": 1e-3,
                          "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8},
    }
    (tmp_path / "run.yaml").write_text(json.dumps(base))  # JSON is YAML
    space = tmp_path / "space.yaml"
    space.write_text(json.dumps({
        "experiment": {"name": name, "num_samples": 3, "max_concurrent": 1, "max_failures": 1,
                       "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
                       "scheduler": {"max_t": MAX_STEPS, "grace_period": MAX_STEPS},
                       "searcher": {"seed": SAMPLER_SEED, "n_startup_trials": 3}},
        "base": "run.yaml",
        "space": {"training_args.learning_rate": {"choice": [DIVERGING_LR, GOOD_LR,
                                                             VICTIM_LR]}},
    }))
    victim = tmp_path / "coco" / "train" / "5.png"
    exp = tmp_path / "results" / name
    # the image must be read again from disk after it is damaged: no in-memory copy
    with ray_scope(cache, DETR_SEARCH_IMAGE_CACHE_MB="0") as scope:
        log = tmp_path / "search.log"
        proc = start_cli(RUN_SCRIPT, ["--space", space, "--storage", tmp_path / "results",
                                      "--no-dashboard"], scope.env, log)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:  # trial 3 (the others ended) has reported
                folder = _trial_dir_with_lr(exp, VICTIM_LR)
                if folder is not None and read_results(folder):
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
    rows = {r["training_args.learning_rate"]: r for r in read_trials_csv(exp)}
    assert set(rows) == {repr(DIVERGING_LR), repr(GOOD_LR), repr(VICTIM_LR)}, rows
    good, bad, victim_row = (rows[repr(lr)] for lr in (GOOD_LR, DIVERGING_LR, VICTIM_LR))
    assert good["status"] == "completed" and good["error"] == ""
    assert float(good[f"best_{METRIC}"]) > 0
    assert "1 completed, 2 errored" in output
    # each failure is a line of ours; the tracebacks stay in the trials' error.txt files
    assert "Traceback" not in output and "Trial task failed" not in output

    # the diverging trial: max_failures 1 -> it ran twice before Ray gave up on it
    assert bad["status"] == "errored"
    assert "DivergedTrainingError" in bad["error"] and "NaN" in bad["error"], bad
    assert bad[f"best_{METRIC}"] == ""
    states = ray_trial_states(exp)
    assert states[bad["trial_id"]]["status"] == "ERROR"
    assert states[bad["trial_id"]]["num_failures"] == 2
    assert states[good["trial_id"]]["status"] == "TERMINATED"
    assert states[good["trial_id"]]["num_failures"] == 0
    error_text = (_trial_dir_with_lr(exp, DIVERGING_LR) / "error.txt").read_text()
    assert error_text.count("Failure # ") == 2, error_text
    assert "Failure # 1 " in error_text and "Failure # 2 " in error_text
    assert error_text.count("DivergedTrainingError") >= 2

    # the unreadable image: one line naming the annotation file, the image id and the file
    assert victim_row["status"] == "errored"
    expected = (f"{tmp_path / 'coco' / 'train.json'}: image id 5: image file {victim} cannot "
                "be read during training: ")
    assert expected in victim_row["error"], victim_row["error"]
    assert expected in output  # the console's "errored" line carries it too
    victim_error = _trial_dir_with_lr(exp, VICTIM_LR) / "error.txt"
    assert f"(traceback: {victim_error})" in output  # in the experiment, not Ray's /tmp
    assert int(victim_row["last_step"]) < MAX_STEPS

    # nothing else is lost: the clean trial won, with its model, config and report
    assert f"winner {good['trial_id']}" in output
    assert (exp / "best_config.yaml").is_file() and (exp / "best_model" / "config.json").is_file()
    assert "1 completed, 2 errored" in (exp / "REPORT.md").read_text()
    study = load_study(exp, name)
    states_by_lr = {t.params["training_args.learning_rate"]: t.state for t in study.trials}
    assert states_by_lr == {GOOD_LR: TrialState.COMPLETE, DIVERGING_LR: TrialState.FAIL,
                            VICTIM_LR: TrialState.FAIL}
