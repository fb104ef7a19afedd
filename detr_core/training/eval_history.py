"""`eval_history.jsonl`: every evaluation of a run, one JSON object per line.

Why a file of its own: checkpoints are pruned to the best step and TensorBoard files need a
reader, but comparing two runs (a rerun of a search trial, two seeds) needs every evaluation
as plain numbers. The writer is an evaluation listener (`detr_core.train`), flushes after
each
line, so the history survives a crash, and starts the file afresh for a new run (a resumed run
appends). Non-finite values are written as null.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from detr_core.files.run_layout import EVAL_HISTORY_FILE


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
            handle.write(json.dumps({k: _finite_or_none(v) for k, v in row.items()}) + "\n")
            handle.flush()


def read_eval_history(path: str | Path) -> list[dict[str, Any]]:
    """The rows of an `eval_history.jsonl` (a folder is taken to hold one); torn lines skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / EVAL_HISTORY_FILE
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
