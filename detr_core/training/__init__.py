"""Training: one fine-tuning run on the HF `Trainer` (`train`), with an evaluation event
per logging step for listeners such as the Tune trainable (`evaluation_events`), the
history file (`eval_history`), averaged weights (`ema`), schedule-free optimizers whose
evaluations leave the training weights alone (`schedule_free`), what a stopped run keeps
(`partial_run`), the checks before anything starts (`preflight`) and the pretraining
of the shipped checkpoint (`pretrain`).

Imports: `detr_core.files`, `detr_core.config`, `detr_core.data`, `detr_core.model`,
`detr_core.evaluation` (it is the top layer); never Ray.
"""
