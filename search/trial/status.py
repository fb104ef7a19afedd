"""What became of a trial: completed, stopped early by ASHA, cut by the time budget, errored...

Tune calls a trial ASHA cut at a low rung and one that trained its whole budget both TERMINATED:
a trial is done when its last reported `step` reached `min(total_steps, max_t)`. The searcher
uses the same rule (`is_early_stopped`), so report and searcher never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COMPLETED = "completed"
ERRORED = "errored"
NOT_STARTED = "not started"
STOPPED_PREFIX = "stopped by ASHA"
BUDGET_CUT_PREFIX = "cut by time budget"
BEFORE_FIRST_EVALUATION = "before its first evaluation"  # a trial ended early that reported nothing
INTERRUPTED_PREFIX = "interrupted"

#: Status categories in the order reports list them (see `status_category`).
CATEGORIES = (COMPLETED, STOPPED_PREFIX, BUDGET_CUT_PREFIX, ERRORED, INTERRUPTED_PREFIX,
              NOT_STARTED)


def planned_budget(last_result: Mapping[str, Any], max_t: int | None) -> int | None:
    """`min(total_steps, max_t)` of those known (None: neither)."""
    limits = [int(v) for v in (last_result.get("total_steps"), max_t) if v is not None]
    return min(limits) if limits else None


def is_early_stopped(last_result: Mapping[str, Any], max_t: int | None) -> bool:
    """True iff the last reported step is below `planned_budget` (a partial-budget score); a
    result without `step` counts as early, and without a known budget nothing is early."""
    budget, step = planned_budget(last_result, max_t), last_result.get("step")
    return budget is not None and (step is None or int(step) < budget)


def trial_status(last_result: Mapping[str, Any] | None, *, errored: bool, max_t: int | None,
                 ended: bool | None = None, cut_by_budget: bool = False,
                 interrupted: bool = False) -> str:
    """Status of one trial, as trials.csv and REPORT.md show it. Below its budget: cut by
    `--time-budget` (`cut_by_budget`), interrupted by Ctrl-C / SIGTERM (`interrupted`) or by the
    driver's death (not `ended`, by default the last result's `done`, which Tune sets on the
    result whose scheduler decision was STOP), else stopped by ASHA."""
    if errored:
        return ERRORED
    if not last_result or last_result.get("step") is None:
        prefix = INTERRUPTED_PREFIX if interrupted else BUDGET_CUT_PREFIX if cut_by_budget else ""
        return f"{prefix} {BEFORE_FIRST_EVALUATION}" if prefix else NOT_STARTED
    step = int(last_result["step"])
    if not is_early_stopped(last_result, max_t):
        return COMPLETED
    ended = bool(last_result.get("done", False)) if ended is None else ended
    prefix = (BUDGET_CUT_PREFIX if cut_by_budget else INTERRUPTED_PREFIX
              if interrupted or not ended else STOPPED_PREFIX)
    return f"{prefix} at step {step}"


def status_category(status: str) -> str:
    """The status without its step number (`stopped by ASHA at step 300` -> `stopped by ASHA`)."""
    return next((c for c in CATEGORIES if status.startswith(c)), status)
