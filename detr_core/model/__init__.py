"""Model and losses: any DETR-family detector built or loaded with `from_pretrained`, its backbone
frozen or not (`build`), the family table and tiny presets (`families`), GIoU / DIoU / CIoU in
the matcher and box loss of each family (`losses`), fine-tuning recipes (`recipes`) and the
check of a checkpoint folder (`model_check`).

Imports: `detr_core.files`, `detr_core.config`, `detr_core.data`.
"""
