"""What became of a trial: completed, stopped early by ASHA, cut by the time budget, errored...

Ray Tune only knows TERMINATED and ERROR; a trial that ASHA cut at a low rung and one that
trained its whole budget are both TERMINATED. The difference is the budget: a trial is done
when its last reported `step` reached `min(total_steps, max_t)` (its planned optimizer steps,
capped by ASHA's maximum budget). The same rule tells the Optuna searcher which results are
partial-budget scores (`is_early_stopped`), so report and searcher never disagree.

Pure functions on plain dicts: no Ray, no files.
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
    """Steps the trial was allowed to run: `min(total_steps, max_t)`, None when neither is known.

    `total_steps` is what the trial itself planned (epochs x steps per epoch, or `max_steps`);
    `max_t` is ASHA's cap in steps. Either may be missing (no ASHA, or an old result).
    """
    limits = [int(v) for v in (last_result.get("total_steps"), max_t) if v is not None]
    return min(limits) if limits else None


def is_early_stopped(last_result: Mapping[str, Any], max_t: int | None) -> bool:
    """True iff the trial's last reported step is below `min(total_steps, max_t)`.

    Used by the Optuna searcher to tell a partial-budget score (ASHA stopped the trial) from a
    final one. A result without `step` counts as early (it never got anywhere); without any
    known budget nothing can be called early.
    """
    budget = planned_budget(last_result, max_t)
    if budget is None:
        return False
    step = last_result.get("step")
    return step is None or int(step) < budget


def trial_status(
    last_result: Mapping[str, Any] | None,
    *,
    errored: bool,
    max_t: int | None,
    ended: bool | None = None,
    cut_by_budget: bool = False,
    interrupted: bool = False,
) -> str:
    """Human-readable status of one trial, as shown in trials.csv and REPORT.md.

    - `errored`: the trial raised (Ray wrote `error.txt` / `error.pkl`, or its state is ERROR);
    - `not started`: no result with a `step` was ever reported;
    - `completed`: the last step reached the planned budget (see `is_early_stopped`);
    - `cut by time budget at step N`: below budget, and `--time-budget` ended the search while
      the trial ran (`cut_by_budget`: the driver records which trials it cut); `cut by time
      budget before its first evaluation` when it had reported nothing;
    - `stopped by ASHA at step N`: below budget, and Tune ended the trial (`ended`);
    - `interrupted at step N`: below budget and still running when Ctrl-C / SIGTERM stopped
      the search (`interrupted`: the driver records which trials) or when the driver died
      (not ended); `interrupted before its first evaluation` when it had reported nothing.

    `ended` defaults to the `done` flag of the last result: Tune sets `done=True` on the result
    whose scheduler decision was STOP, and that result is what `result.json` logs last.
    """
    if errored:
        return ERRORED
    if not last_result or last_result.get("step") is None:
        if interrupted:
            return f"{INTERRUPTED_PREFIX} {BEFORE_FIRST_EVALUATION}"
        if cut_by_budget:
            return f"{BUDGET_CUT_PREFIX} {BEFORE_FIRST_EVALUATION}"
        return NOT_STARTED
    step = int(last_result["step"])
    if not is_early_stopped(last_result, max_t):
        return COMPLETED
    if cut_by_budget:
        return f"{BUDGET_CUT_PREFIX} at step {step}"
    if interrupted:
        return f"{INTERRUPTED_PREFIX} at step {step}"
    if ended is None:
        ended = bool(last_result.get("done", False))
    if ended:
        return f"{STOPPED_PREFIX} at step {step}"
    return f"{INTERRUPTED_PREFIX} at step {step}"


def status_category(status: str) -> str:
    """The status without its step number (`stopped by ASHA at step 300` -> `stopped by ASHA`)."""
    for category in CATEGORIES:
        if status.startswith(category):
            return category
    return status
