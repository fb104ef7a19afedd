"""Model and losses: DETR built or loaded with `from_pretrained`, label maps, backbone
freezing (`build`), GIoU / DIoU / CIoU for both the matcher and the box loss (`losses`),
box geometry (`boxes`) and the check of a checkpoint folder (`model_check`).

Imports: `detr_core.files`, `detr_core.config`, `detr_core.data`.

Public names (other packages import these, not the modules): `box_centres`,
`build_image_processor`, `build_model`, `check_checkpoint`, `check_model_folder`,
`DetrIouLoss`, `load_trained_model`, `num_queries_of`,
`to_original_pixels`.
"""

from __future__ import annotations

from detr_core.model.boxes import box_centres, to_original_pixels
from detr_core.model.build import (
    build_image_processor,
    build_model,
    load_trained_model,
    num_queries_of,
)
from detr_core.model.losses import DetrIouLoss
from detr_core.model.model_check import check_checkpoint, check_model_folder

__all__ = [
    "DetrIouLoss",
    "box_centres",
    "build_image_processor",
    "build_model",
    "check_checkpoint",
    "check_model_folder",
    "load_trained_model",
    "num_queries_of",
    "to_original_pixels",
]
