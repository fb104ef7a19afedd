"""Model and losses: building or loading any DETR-family detector (`build`), the family table
and tiny presets (`families`), the IoU variants of each family's loss (`losses`), fine-tuning
recipes (`recipes`) and checkpoint checks (`model_check`).

Imports: `detr_core.files`, `detr_core.config`, `detr_core.data`.
"""
