"""Training on the HF `Trainer`, evaluation events, averaged weights (`ema`), what a stopped
run keeps (`partial_run`) and the checks before a run (`preflight`).

Imports: `detr_core.files`, `detr_core.config`, `detr_core.data`, `detr_core.model`,
`detr_core.evaluation`; never Ray.
"""
