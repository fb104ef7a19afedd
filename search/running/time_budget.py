"""`--time-budget`: a Tune `Stopper` whose `stop_all()` turns true at the deadline, so Tune
stops every trial, `Tuner.fit()` returns normally and what finished is exported.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ray.tune.stopper import Stopper

from search.store.layout import TIME_BUDGET_FILE
from search.store.storage import ExperimentPath, read_json, write_json_atomic


class TimeBudget(Stopper):
    """Stop the whole experiment once `budget_s` seconds have passed since `start`."""

    def __init__(self, budget_s: float, start: float | None = None) -> None:
        self.budget_s = budget_s
        self.deadline = (time.time() if start is None else start) + budget_s
        self.reached = False

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False  # single trials are ASHA's business

    def stop_all(self) -> bool:
        self.reached = self.reached or time.time() >= self.deadline
        return self.reached


def write_budget_record(experiment_dir: ExperimentPath, budget_s: float,
                        cut: Sequence[str]) -> ExperimentPath:
    """`time_budget.json`: the budget and the trials it cut, an earlier session's included."""
    earlier = read_json(experiment_dir / TIME_BUDGET_FILE)
    before = earlier.get("cut_trials") if isinstance(earlier, dict) else None
    trials = [str(t) for t in before] if isinstance(before, list) else []
    trials += [t for t in cut if t not in trials]
    return write_json_atomic(experiment_dir / TIME_BUDGET_FILE,
                             {"budget_s": budget_s, "cut_trials": trials})
