"""One `EvaluationEvent` per evaluation of a run, for whoever listens (Tune, history files): a
new best step once its checkpoint is on disk (`on_save`), with further evaluations (`test_*`,
`eval_ema_*`) riding along; `eval_history.jsonl` keeps every one as a JSON line.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from transformers import TrainerCallback

from detr_core.config.metric_names import eval_name, is_better
from detr_core.files.file_io import EVAL_HISTORY_FILE

TEST_PREFIX = "test_"
#: The Trainer's timings of an evaluation: not metrics of the model.
TIMING_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second",
                   "_model_preparation_time")


@dataclass(frozen=True)
class EvaluationEvent:
    """What a caller learns after each evaluation (every logging step)."""

    step: int
    epoch: float
    max_steps: int
    metrics: dict[str, float]  # eval_* (val split), plus test_* when test is evaluated too
    train_loss: float | None
    learning_rate: float | None
    is_new_best: bool
    best_step: int | None
    best_metric: float | None
    best_checkpoint: Path | None  # Trainer checkpoint of the best step: model + optimizer state
    first_step_time: float | None = None  # wall clock (time.time()) when step 1 finished


class EvaluationListener(Protocol):
    """Receives every evaluation of a run (e.g. to `ray.tune.report` it)."""

    def on_evaluation(self, event: EvaluationEvent) -> None: ...


class EvaluationRelay(TrainerCallback):
    """Turns Trainer callbacks into one `EvaluationEvent` per evaluation."""

    def __init__(self, listeners: Sequence[EvaluationListener], history: list[dict]) -> None:
        self.listeners = list(listeners)
        self.history = history
        self.evaluations: list[tuple[str, Callable[[], dict[str, Any]]]] = []
        self._inside_evaluation = False
        self.train_loss: float | None = None
        self.learning_rate: float | None = None
        self.first_step_time: float | None = None
        self._pending: dict[str, float] | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any):
        if self.first_step_time is None:
            self.first_step_time = time.time()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any):
        if logs and "loss" in logs:
            self.train_loss = float(logs["loss"])
            self.learning_rate = logs.get("learning_rate")

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None,
                    **kw: Any):
        if self._inside_evaluation:
            return  # one of the further evaluations this relay runs, below
        further: dict[str, float] = {}
        self._inside_evaluation = True
        try:
            for prefix, evaluate in self.evaluations:
                further.update({k: float(v) for k, v in evaluate().items()
                                if k.startswith(f"{prefix}_") and isinstance(v, int | float)
                                and not k.endswith(TIMING_SUFFIXES)})
        finally:
            self._inside_evaluation = False
        if metrics is not None:
            metrics.update(further)  # the dict the Trainer picks its best step from
        metrics = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, int | float)}
        self.history.append({"step": state.global_step, **metrics})
        mode = "max" if args.greater_is_better else "min"
        if is_better(metrics.get(eval_name(args.metric_for_best_model)), state.best_metric, mode):
            self._pending = metrics
        else:
            self._emit(metrics, state, is_new_best=False)

    def add_evaluation(self, prefix: str, evaluate: Callable[[], dict[str, Any]]) -> None:
        """Run `evaluate` after every val evaluation; keep its numeric `<prefix>_*` metrics."""
        self.evaluations.append((prefix, evaluate))

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any):
        if self._pending is not None:
            metrics, self._pending = self._pending, None
            self._emit(metrics, state, is_new_best=True)

    def _emit(self, metrics: dict[str, float], state: Any, is_new_best: bool) -> None:
        checkpoint = Path(state.best_model_checkpoint) if state.best_model_checkpoint else None
        event = EvaluationEvent(
            step=state.global_step, epoch=float(state.epoch or 0.0), max_steps=state.max_steps,
            metrics=metrics, train_loss=self.train_loss, learning_rate=self.learning_rate,
            is_new_best=is_new_best, best_step=state.best_global_step,
            best_metric=state.best_metric, best_checkpoint=checkpoint,
            first_step_time=self.first_step_time)
        for listener in self.listeners:
            listener.on_evaluation(event)


class EvalHistoryWriter:
    """Evaluation listener appending `{"step", "epoch", "train_loss", ..., eval metrics}`."""

    def __init__(self, output_dir: Path, resume: bool = False) -> None:
        self.path = Path(output_dir) / EVAL_HISTORY_FILE
        if not resume:
            self.path.write_text("", encoding="utf-8")

    def on_evaluation(self, event: Any) -> None:
        row = {"step": event.step, "epoch": event.epoch, "train_loss": event.train_loss,
               "learning_rate": event.learning_rate, **event.metrics}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({k: None if isinstance(v, float) and not math.isfinite(v)
                                     else v for k, v in row.items()}) + "\n")


def read_eval_history(path: str | Path) -> list[dict[str, Any]]:
    """The rows of an `eval_history.jsonl` (a folder is taken to hold one); torn lines skipped."""
    path = Path(path)
    path = path / EVAL_HISTORY_FILE if path.is_dir() else path
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if isinstance(row, dict):
                rows.append(row)
    return rows
