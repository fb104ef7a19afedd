"""What a running search prints, from a Ray Tune `Callback` (Tune's own output only with `-v`):
on a terminal one table redrawn in place (at most once a second), elsewhere (a log file, CI) one
line per trial event. Planned steps shrink as ASHA stops trials: a trial not started counts
`max_t`, a running one its own budget, an ended one what it ran.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from ray.tune import Callback

from detr_core.config.metric_names import is_better
from search.space.distributions import format_value
from search.space.spec import SearchSpec
from search.store.layout import as_float, as_int
from search.store.storage import ExperimentPath
from search.trial.status import BEFORE_FIRST_EVALUATION, is_early_stopped, planned_budget
from search.trial.trainable import trial_values

RUNNING, STOPPED, FINISHED, ERRORED, RETRYING, CUT, INTERRUPTED = (
    "running", "stopped", "finished", "errored", "retrying", "cut", "interrupted")


@dataclass
class TrialProgress:
    """What the console knows about one trial."""

    trial_id: str
    values: dict[str, Any]
    status: str = RUNNING
    step: int = 0
    planned: int | None = None
    best: float | None = None
    rungs_passed: set[float] = field(default_factory=set)

    @property
    def ended(self) -> bool:
        return self.status in (STOPPED, FINISHED, ERRORED, CUT, INTERRUPTED)


def short_key(key: str) -> str:
    """`training_args.learning_rate` -> `learning_rate` (the last part says enough)."""
    return key.rsplit(".", 1)[-1]


def _compact(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else format_value(value)


def format_duration(seconds: float) -> str:
    """`1:02:03` / `2:03`."""
    hours, rest = divmod(max(0, int(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class SearchProgress(Callback):
    """Tune callback printing the search's progress (table on a TTY, event lines otherwise)."""

    def __init__(self, spec: SearchSpec, stream: TextIO | None = None, tty: bool | None = None,
                 refresh_s: float = 1.0, experiment: ExperimentPath | None = None) -> None:
        self.spec = spec
        self.experiment = experiment  # where error lines point: the trial folders kept there
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.refresh_s = refresh_s
        self.trials: dict[str, TrialProgress] = {}
        self.start = time.monotonic()
        self._drawn_lines = 0
        self._last_draw = 0.0
        self._rungs = [r for r in spec.scheduler.rungs() if r < spec.scheduler.max_t]

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks into tuner.pkl; a stream does not pickle."""
        return {**self.__dict__, "stream": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.stream = sys.stdout

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = self.trials.get(trial.trial_id)
        if row is None:
            values = trial_values(self.spec.space, trial.config, self.spec.base, self.spec.recipe)
            row = TrialProgress(trial.trial_id, {k: values[k] for k in self.spec.searched_keys()
                                                 if k in values})
            self.trials[trial.trial_id] = row
            self._event(row, "started   " + " ".join(f"{short_key(k)}={_compact(v)}"
                                                     for k, v in row.values.items()))
        else:  # restarted after a failure, from its checkpoint
            row.status = RUNNING
            self._event(row, f"restarted from step {row.step}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        row = self.trials.get(trial.trial_id)
        step = as_int(result.get("step"))
        if row is None or step is None:
            return
        previous, row.step = row.step, step
        row.planned = planned_budget(result, self.spec.scheduler.max_t)
        value = as_float(result.get(self.spec.metric))
        if is_better(value, row.best, self.spec.mode):
            row.best = value
        if result.get("done"):
            if is_early_stopped(result, self.spec.scheduler.max_t):
                row.status = STOPPED
                self._event(row, f"stopped by ASHA at step {step}: {self._metric_text(value)}")
            else:
                self._finish(row)
            return
        for rung in self._rungs:
            if previous < rung <= step and rung not in row.rungs_passed:
                row.rungs_passed.add(rung)
                self._event(row, f"passed rung {format_value(rung)} at step {step}: "
                                 f"{self._metric_text(value)}")
        self._maybe_draw()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = self.trials.get(trial.trial_id)
        if row is None or row.ended:
            return
        if row.planned is not None and row.step < row.planned:
            row.status = STOPPED
            self._event(row, f"stopped at step {row.step}: {self._metric_text(row.best)}")
        else:
            self._finish(row)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = self.trials.get(trial.trial_id)
        if row is None:
            return
        row.status = ERRORED
        where = _error_location(trial, self.experiment)
        self._event(row, f"errored at step {row.step}: {_error_line(trial)}"
                         + (f" (traceback: {where})" if where else ""))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = self.trials.get(trial.trial_id)
        if row is None:
            return
        row.status = RETRYING
        self._event(row, f"failed at step {row.step}, retrying from its last checkpoint: "
                         f"{_error_line(trial)}")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._maybe_draw()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.tty:
            self._draw()

    def running_trial_ids(self) -> list[str]:
        """Trials started and not ended (when the search stops early, these are cut)."""
        return [t.trial_id for t in self.trials.values() if not t.ended]

    def mark_cut(self, trial_ids: list[str]) -> None:
        """The time budget ended the search while these trials ran: say so, one line each."""
        self._mark(((t, None) for t in trial_ids), CUT, "cut by time budget")

    def mark_interrupted(self, running: dict[str, int | None]) -> None:
        """Ctrl-C / SIGTERM stopped the search while these trials ran (id -> last step)."""
        self._mark(running.items(), INTERRUPTED, "interrupted")

    def _mark(self, steps: Iterable[tuple[str, int | None]], status: str, what: str) -> None:
        for trial_id, step in steps:
            row = self.trials.get(trial_id)
            if row is not None:
                row.status = status
                row.step = step if step is not None else row.step
                # how far it got, as trials.csv says it (`search.trial.status`)
                far = BEFORE_FIRST_EVALUATION if row.best is None else \
                    f"at step {row.step}: best {self._metric_text(row.best)}"
                self._event(row, f"{what} {far}")
        if self.tty:
            self._draw()

    def steps_done(self) -> int:
        return sum(t.step for t in self.trials.values())

    def steps_planned(self) -> int:
        """Upper bound of all steps: ended trials what they ran, others their budget."""
        max_t = self.spec.scheduler.max_t
        known = sum(t.step if t.ended else (t.planned or max_t) for t in self.trials.values())
        return known + max(0, self.spec.num_samples - len(self.trials)) * max_t

    def overall_line(self) -> str:
        done, planned = self.steps_done(), self.steps_planned()
        elapsed = time.monotonic() - self.start
        eta = "?" if done == 0 else format_duration(elapsed * (planned - done) / done)
        ended = sum(t.ended for t in self.trials.values())
        return (f"{ended}/{self.spec.num_samples} trials ended | steps {done}/{planned} | "
                f"elapsed {format_duration(elapsed)} | ETA {eta}")

    def table_lines(self) -> list[str]:
        """The TTY view: overall line, then one row per trial."""
        keys = [short_key(k) for k in self.spec.searched_keys()]
        rows = [["trial", "status", *keys, "step", f"best {self.spec.metric}"]]
        for t in self.trials.values():
            planned = "?" if t.planned is None else str(t.planned)
            rows.append([t.trial_id, t.status, *(_compact(v) for v in t.values.values()),
                         f"{t.step}/{planned}", "" if t.best is None else f"{t.best:.4g}"])
        widths = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(len(rows[0]))]
        table = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
                 for r in rows]
        return [self.overall_line(), *table]

    def _finish(self, row: TrialProgress) -> None:
        row.status = FINISHED
        self._event(row, f"finished at step {row.step}: best {self._metric_text(row.best)}")

    def _metric_text(self, value: float | None) -> str:
        return f"{self.spec.metric} {'n/a' if value is None else f'{value:.4g}'}"

    def _event(self, row: TrialProgress, text: str) -> None:
        if self.tty:
            self._draw()
            return
        elapsed = format_duration(time.monotonic() - self.start)
        self.stream.write(f"[{elapsed:>7}] trial {row.trial_id} {text}\n")
        self.stream.flush()

    def _maybe_draw(self) -> None:
        if self.tty and time.monotonic() - self._last_draw >= self.refresh_s:
            self._draw()

    def _draw(self) -> None:
        lines = self.table_lines()
        if self._drawn_lines:
            self.stream.write(f"\x1b[{self._drawn_lines}F\x1b[J")  # back up, clear below
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn_lines = len(lines)
        self._last_draw = time.monotonic()


def _error_location(trial: Any, experiment: ExperimentPath | None) -> str | None:
    """The trial's error file in the experiment (maybe a URI), not Ray's staging copy in /tmp."""
    name = getattr(getattr(trial, "run_metadata", None), "error_filename", None)
    folder = getattr(getattr(trial, "storage", None), "trial_dir_name", None)
    if experiment is None or not (name and folder):
        return getattr(trial, "error_file", None)
    return str(experiment / folder / name)


def _error_line(trial: Any) -> str:
    """The last line of the trial's error file: the exception message."""
    try:
        with open(getattr(trial, "error_file", None) or "", encoding="utf-8",
                  errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except OSError:
        return "see error.txt in its folder"
    return lines[-1][:500] if lines else "see error.txt in its folder"
