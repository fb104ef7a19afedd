"""Training on the HF `Trainer`: backbone learning-rate groups and schedule-free optimizers
(`trainer`), an evaluation event per logging step and the history file (`events`), averaged
weights (`ema`), what a stopped run keeps (`partial_run`) and the checks before anything starts
(`preflight`). The run itself is `detr_core/train.py`.

Imports: `detr_core.files`, `detr_core.config`, `detr_core.data`, `detr_core.model`,
`detr_core.evaluation`; never Ray.
"""
