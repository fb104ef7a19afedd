"""Faults, with `search/run.py` as a real subprocess: a trial that diverges (set up from the
space file alone) is retried `max_failures` times, then recorded as errored while the search
finishes; a driver killed with SIGKILL mid-search is resumed with `--resume`, keeping the
finished trials and the Optuna study.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from search_helpers import (
    METRIC,
    RUN_SCRIPT,
    TERMINAL_STATUS_PREFIXES,
    load_study,
    optuna_trial_for,
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


def _wait_for_a_finished_and_a_pending_trial(exp: Path, proc, log: Path,
                                             timeout: float = 300) -> dict:
    """Poll Tune's saved experiment state until one trial is TERMINATED (and its result.json
    has its `done: true` line) while the next one is PENDING or RUNNING; returns that state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "search ended before it could be killed:\n" + \
            output_tail(log.read_text(errors="replace"))
        if exp.is_dir():
            states = ray_trial_states(exp)
            done = {t for t, s in states.items() if s["status"] == "TERMINATED"}
            waiting = {t for t, s in states.items() if s["status"] in ("PENDING", "RUNNING")}
            finished = {read_results(d)[-1]["trial_id"] for d in trial_dirs(exp)
                        if read_results(d) and read_results(d)[-1].get("done")}
            if done and waiting and done <= finished:
                return states
        time.sleep(0.25)
    raise AssertionError("no trial finished in time:\n" + output_tail(log.read_text()))


def test_resume_after_sigkill_keeps_finished_trials_and_the_study(
        tmp_path: Path, cache: Path) -> None:
    name = "resume"
    num_samples = 2
    space = write_space(
        tmp_path / "space.yaml", name,
        {"training_args.learning_rate": {"loguniform": [1.0e-4, 3.0e-3]}},
        num_samples=num_samples, max_concurrent=1, epochs=2)
    args = ["--space", space, "--storage", tmp_path / "results", "--no-dashboard"]
    exp = tmp_path / "results" / name
    # Tune saves its experiment state at most every 10 s by default; every second here, so
    # the state on disk knows the second trial while it waits for its worker.
    with ray_scope(cache, TUNE_GLOBAL_CHECKPOINT_S="1") as scope:
        log = tmp_path / "first.log"
        proc = start_cli(RUN_SCRIPT, args, scope.env, log)
        try:
            states = _wait_for_a_finished_and_a_pending_trial(exp, proc, log)
        finally:
            proc.send_signal(signal.SIGKILL)  # the driver only, not its Ray processes
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        # Whatever the dead driver's Ray left (workers, raylet, GCS) goes now, so nothing
        # writes into the experiment while the resumed driver runs.
        left = scope.kill_all()
        print(f"killed {len(left)} Ray processes the dead driver left: {left}")
        assert scope.processes() == []
        assert len(states) == num_samples

        finished = {t for t, s in states.items() if s["status"] == "TERMINATED"}
        before = {}
        for trial in trial_dirs(exp):
            results = read_results(trial)
            if results and results[0]["trial_id"] in finished:
                before[results[0]["trial_id"]] = (trial.name,
                                                  (trial / "result.json").read_text())
        assert set(before) == finished
        study_before = {t.number: t for t in load_study(exp, name).trials}
        assert len(study_before) == num_samples
        assert sum(t.state.is_finished() for t in study_before.values()) == len(finished)

        resumed = run_cli(RUN_SCRIPT, [*args, "--resume"], scope.env)
        assert resumed.returncode == 0, output_tail(resumed)
        scope.assert_no_leftovers()

    # every trial ended, none twice, and the ones finished before the kill are untouched
    rows = read_trials_csv(exp)
    assert len(rows) == len(trial_dirs(exp)) == num_samples
    assert {r["trial_id"] for r in rows} == set(states)
    for row in rows:
        assert row["status"].startswith(TERMINAL_STATUS_PREFIXES), row
    for trial_id, (folder, text) in before.items():
        assert (exp / folder / "result.json").read_text() == text, trial_id
    states_after = ray_trial_states(exp)
    assert set(states_after) == set(states)
    assert {s["status"] for s in states_after.values()} == {"TERMINATED"}

    # the searcher kept its study: earlier trials unchanged, one Optuna trial per Tune trial
    study = load_study(exp, name)
    assert len(study.trials) == num_samples
    for number, old in study_before.items():
        new = study.trials[number]
        assert new.params == old.params
        if old.state.is_finished():
            assert (new.state, new.value, new.intermediate_values) == \
                (old.state, old.value, old.intermediate_values)
    for trial in trial_dirs(exp):
        ot = optuna_trial_for(study, json.loads((trial / "params.json").read_text()))
        assert ot.state.is_finished()
        results = read_results(trial)
        # (a trial resumed from a checkpoint may log a step twice; Optuna keeps the first)
        assert set(ot.intermediate_values) == {r["step"] for r in results}
        if results[0]["trial_id"] in finished:
            assert ot.intermediate_values == {r["step"]: r[METRIC] for r in results}
