"""A run that stops early (Ctrl-C, SIGTERM, an unreadable image) keeps the best model it had
and says where; during a CLI run SIGTERM is the same `KeyboardInterrupt` as Ctrl-C.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detr_core.model.model_check import check_model_folder


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run; `note` says what was kept and where."""

    def __init__(self, step: int, max_steps: int, note: str) -> None:
        super().__init__(f"interrupted at step {step} of {max_steps}: {note}")
        self.step, self.max_steps, self.note = step, max_steps, note


@dataclass
class BestSoFar:
    """Evaluation listener: the last new best step and its checkpoint (on disk by then)."""

    step: int | None = None
    value: float | None = None
    checkpoint: Path | None = None

    def on_evaluation(self, event: Any) -> None:
        if event.is_new_best and event.best_checkpoint is not None:
            self.step, self.value = event.step, event.best_metric
            self.checkpoint = event.best_checkpoint


def best_model_note(best: BestSoFar, metric: str,
                    export: Callable[[Path, int, float | None], Path]) -> str:
    """Export the best checkpoint so far with `export`; the sentence saying where it is."""
    if best.checkpoint is None or best.step is None:
        return "no evaluation had finished, so no model was kept"
    try:
        check_model_folder(best.checkpoint)
        folder = export(best.checkpoint, best.step, best.value)
    except Exception as exc:  # a half-written checkpoint must not hide the interruption
        return f"the best checkpoint so far ({best.checkpoint}) could not be exported: {exc}"
    value = "n/a" if best.value is None else f"{best.value:.4g}"
    return f"the best model so far (step {best.step}, {metric} {value}) is in {folder}"


@dataclass
class StopSignal:
    """Which signal stopped the run (None: none did)."""

    signum: int | None = None

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process ended by it (130, 143)."""
        return 128 + (self.signum or signal.SIGINT)


@contextmanager
def stop_signals_raise_interrupt() -> Iterator[StopSignal]:
    """SIGINT and SIGTERM raise `KeyboardInterrupt` in the main thread, and are remembered."""
    stop = StopSignal()

    def handler(signum: int, frame: Any) -> None:
        stop.signum = stop.signum or signum
        raise KeyboardInterrupt  # a second one stops keeping the best model, too

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
