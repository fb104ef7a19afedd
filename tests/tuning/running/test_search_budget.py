"""End to end: `--time-budget` ends a real search at that wall time and exports what finished.

Two trials run at once behind a gate (`search.trial.trainable.TRIAL_GATE_ENV`): each reports
its first evaluation, then waits while the gate's `hold` file exists, which the test never
removes, so the budget, not ASHA or the end of training, ends both. The budget is 1 s, and its
clock (the stopper's `time.time`, in this process) stands before the deadline until both
trials have reported: the budget runs out against blocked trials, whatever the machine's speed.
The test reads back what a user would: the console lines ("cut by time budget", never
"stopped by ASHA"), trials.csv and REPORT.md, the Optuna study (the cut trials PRUNED,
not left RUNNING), and best_config.yaml, whose training_args must equal field for field the
`TrainingArguments` the winner's Trainer saved in its checkpoint
(`best_model/training_args.bin`), with a `qloguniform` and a `qrandint` dimension in the space:
the rounding the trainable applied is what the export wrote.
"""

from __future__ import annotations

import enum
import json
import re
import threading
import time
from pathlib import Path

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
from search.running import time_budget
from search.trial.trainable import TRIAL_GATE_ENV

pytestmark = pytest.mark.slow

NAME = "budget"
BUDGET_S = 1
SPACE = {
    "iou_loss": {"choice": ["giou", "diou"]},
    "training_args.learning_rate": {"loguniform": [1.0e-5, 1.0e-3]},
    "training_args.max_grad_norm": {"qloguniform": [0.1, 1.0, 0.1]},
    "training_args.per_device_eval_batch_size": {"qrandint": [4, 8, 4]},
}


class HeldClock:
    """`time` for the budget's stopper: the epoch (before any deadline) until every trial of
    `experiment` has reported, then the real clock."""

    def __init__(self, experiment: Path, trials: int) -> None:
        self.experiment, self.trials, self.released_at = experiment, trials, None

    def time(self) -> float:
        if self.released_at is None:
            reported = self.experiment.is_dir() and sum(
                1 for d in trial_dirs(self.experiment) if read_results(d)) >= self.trials
            if not reported:
                return 0.0
            self.released_at = time.time()
        return time.time()


@pytest.fixture(scope="module")
def budget_search(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, float]:
    cache = session_cache(tmp_path_factory)
    root = tmp_path_factory.mktemp("budget")
    space = write_space(root / "space.yaml", NAME, SPACE, num_samples=3, max_concurrent=2,
                        grace_period=40, reduction_factor=2, epochs=10, logging_steps=2)
    (root / "gate").mkdir()
    (root / "gate" / "hold").touch()
    clock = HeldClock(root / "results" / NAME, trials=2)
    # a stopper that never fires must fail the test, not hang it: the trials then run out
    release = threading.Timer(300, (root / "gate" / "hold").unlink, kwargs={"missing_ok": True})
    release.start()
    with ray_scope(cache, **{TRIAL_GATE_ENV: str(root / "gate")}) as scope, \
            pytest.MonkeyPatch.context() as patch:
        patch.setattr(time_budget, "time", clock)
        proc = run_main_in_process(run_main, ["--space", space, "--storage", root / "results",
                                              "--no-dashboard", "--time-budget",
                                              f"{BUDGET_S}s"], scope.env)
        ended = time.time()
        release.cancel()
        scope.assert_no_leftovers()
    assert proc.returncode == 0, output_tail(proc)
    assert clock.released_at is not None, output_tail(proc)
    return root / "results" / NAME, proc.stdout + proc.stderr, ended - clock.released_at


def test_the_budget_cuts_running_trials_and_the_search_ends(budget_search) -> None:
    exp, output, took = budget_search
    assert took < 120, took  # stopped once the budget ran out, then exported
    assert f"time budget of {BUDGET_S} s reached: 2 running trial(s) cut, exporting what finished" \
        in output
    assert "stopped by ASHA" not in output
    cut_lines = re.findall(r"trial (\w+) cut by time budget at step (\d+)", output)
    rows = {r["trial_id"]: r for r in read_trials_csv(exp)}
    assert len(rows) == len(trial_dirs(exp)) == 2
    assert {tid: f"cut by time budget at step {step}" for tid, step in cut_lines} == \
        {tid: row["status"] for tid, row in rows.items()}
    assert json.loads((exp / "time_budget.json").read_text()) == {
        "budget_s": float(BUDGET_S), "cut_trials": [tid for tid, _ in cut_lines]}
    report = (exp / "REPORT.md").read_text()
    assert "- Trials: 2 (2 cut by time budget)" in report
    assert (exp / "best_config.yaml").is_file() and (exp / "best_model").is_dir()


def test_cut_trials_are_pruned_in_the_study(budget_search) -> None:
    from optuna.trial import TrialState

    exp, _, _ = budget_search
    study = load_study(exp, NAME)
    rows = read_trials_csv(exp)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    last_steps = sorted(max(t.intermediate_values) for t in study.trials)
    assert last_steps == sorted(int(r["last_step"]) for r in rows)


def test_best_config_is_what_the_winner_trained_with(budget_search) -> None:
    import torch

    exp, _, _ = budget_search
    exported = yaml.safe_load((exp / "best_config.yaml").read_text())["training_args"]
    trained = torch.load(exp / "best_model" / "training_args.bin", weights_only=False)
    for key, value in exported.items():
        actual = getattr(trained, key)
        actual = actual.value if isinstance(actual, enum.Enum) else actual
        assert actual == value, (key, value, actual)
    winner = read_trials_csv(exp)[0]
    assert exported["max_grad_norm"] == float(winner["training_args.max_grad_norm"])
    assert round(exported["max_grad_norm"] * 10, 9).is_integer()  # on the q = 0.1 grid
    assert exported["per_device_eval_batch_size"] in (4, 8)
