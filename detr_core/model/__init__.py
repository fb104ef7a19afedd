"""Model: building or loading any DETR-family detector (`build`), families and tiny presets,
IoU loss variants (`losses`), fine-tuning recipes and checkpoint checks (`model_check`).

Imports: `detr_core.files`, `detr_core.config`, `detr_core.data`.
"""
