"""The finalists stage for real: a search, its 2 best configurations x 2 fresh seeds as Ray
trials, Ctrl-C in the middle of the stage, `--resume` finishing it.

`search/run.py` runs as a subprocess in its own process group (a Ctrl-C in a terminal reaches
the whole group). The search (3 trials, one at a time) ends; once a run of the stage has
reported, SIGINT: exit 130, `interrupted.json` says the finalists stage stopped, the last line
is the resume command. That command (again a subprocess) trains only what the stage still
lacks (no search trial is restored or added), and the export chooses the winner by the mean
validation value of the fresh runs, which the test recomputes from the runs' own
`result.json`. The choice's rules on hand-made numbers (the winner not the search's best run,
test numbers never choosing) are in tests/tuning/results/test_finalists.py. The stage's runs
wait behind a gate after each report (`search.trial.trainable.TRIAL_GATE_ENV`,
`hold-finalists`), so the signal finds the stage unfinished whatever the machine's speed; the
resume runs without the hold.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import statistics
import sys
import time
from pathlib import Path

import pytest
import yaml
from search_helpers import (
    METRIC,
    RUN_SCRIPT,
    output_tail,
    ray_scope,
    read_results,
    read_trials_csv,
    session_cache,
    start_cli,
    trial_dirs,
    write_space,
)

from search.trial.trainable import TRIAL_GATE_ENV

pytestmark = pytest.mark.slow

NAME = "finals"
STEPS = 24  # 32 images / batch 8 = 4 steps an epoch, 6 epochs; evaluated every 8 steps
SESSION_TIMEOUT_S = 400


def _space(root: Path) -> Path:
    path = write_space(root / "space.yaml", NAME,
                       {"training_args.learning_rate": {"choice": [3.0e-4, 1.0e-3, 3.0e-3]},
                        "iou_loss": {"choice": ["giou", "diou"]}},
                       num_samples=3, grace_period=STEPS, max_t=STEPS, epochs=6,
                       logging_steps=8)
    doc = yaml.safe_load(path.read_text())
    doc["experiment"]["finalists"] = {"top": 2, "seeds": 2}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _wait_for_a_finalist_report(exp: Path, proc, log: Path) -> None:
    deadline = time.monotonic() + SESSION_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the driver ended early:\n" + output_tail(log.read_text())
        folder = exp / "finalists"
        if folder.is_dir() and any(read_results(d) for d in trial_dirs(folder)):
            return
        time.sleep(0.2)
    raise AssertionError("no finalist run reported in time:\n" + output_tail(log.read_text()))


def _finish(proc, log: Path) -> str:
    try:
        proc.wait(timeout=SESSION_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log.read_text(errors="replace")


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("finals")
    space, storage = _space(root), root / "results"
    exp = storage / NAME
    gate = root / "gate"
    gate.mkdir()
    (gate / "hold-finalists").touch()  # the stage's runs wait after each report
    with ray_scope(session_cache(tmp_path_factory), **{TRIAL_GATE_ENV: str(gate)}) as scope:
        first_log = root / "first.log"
        proc = start_cli(RUN_SCRIPT, ["--space", space, "--storage", storage,
                                      "--no-dashboard"], scope.env, first_log,
                         new_session=True)
        _wait_for_a_finalist_report(exp, proc, first_log)
        os.killpg(proc.pid, signal.SIGINT)
        first = _finish(proc, first_log)
        first_code = proc.returncode
        interrupted = json.loads((exp / "interrupted.json").read_text())
        scope.assert_no_leftovers()
        command = [line for line in first.splitlines() if line.strip()][-1]
        search_trials = sorted(d.name for d in trial_dirs(exp))
        second_log = root / "second.log"
        (gate / "hold-finalists").unlink()
        argv = shlex.split(command)
        assert argv[:2] == ["python", "search/run.py"], command
        proc = start_cli(RUN_SCRIPT, argv[2:], scope.env, second_log)
        second = _finish(proc, second_log)
        scope.assert_no_leftovers()
    return {"exp": exp, "first": first, "first_code": first_code, "command": command,
            "interrupted": interrupted, "search_trials": search_trials, "second": second,
            "second_code": proc.returncode}


def test_ctrl_c_in_the_stage_stops_it_resumably(stage: dict) -> None:
    assert "Traceback" not in stage["first"], output_tail(stage["first"])
    assert stage["first_code"] == 130, output_tail(stage["first"])
    assert "finalists: 2 configuration(s) (#1 = trial " in stage["first"]
    assert stage["interrupted"]["stage"] == "finalists"
    assert stage["interrupted"]["signal"] == "SIGINT"
    assert " --resume" in stage["command"], stage["command"]
    assert f"--name {NAME}" in stage["command"]


def test_the_resumed_stage_runs_every_planned_run_and_nothing_else(stage: dict) -> None:
    exp = stage["exp"]
    assert stage["second_code"] == 0, output_tail(stage["second"])
    assert sorted(d.name for d in trial_dirs(exp)) == stage["search_trials"]  # no search trial
    assert len(read_trials_csv(exp)) == 3
    plan = json.loads((exp / "finalists.json").read_text())
    assert plan["seeds"] == [43, 44]  # every search trial trained with seed 42
    runs = {}
    for folder in trial_dirs(exp / "finalists"):
        results = read_results(folder)
        config = results[0]["config"]
        runs[(config["finalist"], config["seed"])] = results
        assert results[-1]["step"] == STEPS, folder  # the search's full budget
        assert (folder / "test_metrics.json").is_file(), folder
    assert sorted(runs) == [(1, 43), (1, 44), (2, 43), (2, 44)]
    assert not (exp / "interrupted.json").is_file()


def test_the_winner_is_the_best_mean_of_the_fresh_runs(stage: dict) -> None:
    exp = stage["exp"]
    plan = json.loads((exp / "finalists.json").read_text())
    means = {}
    for folder in trial_dirs(exp / "finalists"):
        results = read_results(folder)
        number = results[0]["config"]["finalist"]
        means.setdefault(number, []).append(min(r[METRIC] for r in results))
    means = {n: statistics.fmean(v) for n, v in means.items()}
    winner = min(means, key=means.get)  # eval_loss_bbox: lower is better
    source = plan["configurations"][winner - 1]["source_trial"]
    best = yaml.safe_load((exp / "best_config.yaml").read_text())
    assert best["seed"] in (43, 44)
    header = (exp / "best_config.yaml").read_text().splitlines()[1]
    assert f"configuration #{winner} (trial {source}," in header
    report = (exp / "REPORT.md").read_text()
    assert "## Finalists" in report and f"**#{winner}: trial `{source}`" in report
    assert f"finalists:   configuration #{winner} (trial {source}) won" in stage["second"]
    source_model = json.loads((exp / "best_model" / "export_source.json").read_text())
    assert source_model["checkpoint"].startswith("finalists/")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
