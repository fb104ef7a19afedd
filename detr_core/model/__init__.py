"""Model and losses: any supported DETR-family detector built or loaded with
`from_pretrained` (`build`), the family table and tiny presets (`families`), the backbone and
its freezing (`backbone`), GIoU / DIoU / CIoU for both the matcher and the box loss of each
family (`losses`), the published and measured fine-tuning recipes (`recipes`), box geometry
(`boxes`) and the check of a checkpoint folder (`model_check`).

Imports: `detr_core.files`, `detr_core.config`, `detr_core.data`.
"""
