"""Training: one fine-tuning run on the HF `Trainer` (`train`), with an evaluation event
per logging step for listeners such as the Tune trainable (`evaluation_events`), the
history file (`eval_history`), averaged weights (`ema`), schedule-free optimizers whose
evaluations leave the training weights alone (`schedule_free`), what a stopped run keeps
(`partial_run`), the checks before anything starts (`preflight`) and the pretraining
of the shipped checkpoint (`pretrain`).

Imports: `detr_core.files`, `detr_core.config`, `detr_core.data`, `detr_core.model`,
`detr_core.evaluation` (it is the top layer); never Ray.

Public names (other packages import these, not the modules): `build_datasets`,
`check_run_inputs`, `check_static_inputs`, `DetrTrainer`, `EmaCallback`, `EvaluationEvent`,
`EvaluationListener`, `make_compute_metrics`, `read_eval_history`, `RunResult`, `train_run`,
`weights_folder`.
"""

from __future__ import annotations

from detr_core.training.ema import EmaCallback, weights_folder
from detr_core.training.eval_history import read_eval_history
from detr_core.training.evaluation_events import EvaluationListener
from detr_core.training.preflight import check_run_inputs, check_static_inputs
from detr_core.training.train import EvaluationEvent, RunResult, build_datasets, train_run
from detr_core.training.trainer import DetrTrainer, make_compute_metrics

__all__ = [
    "DetrTrainer",
    "EmaCallback",
    "EvaluationEvent",
    "EvaluationListener",
    "RunResult",
    "build_datasets",
    "check_run_inputs",
    "check_static_inputs",
    "make_compute_metrics",
    "read_eval_history",
    "train_run",
    "weights_folder",
]
