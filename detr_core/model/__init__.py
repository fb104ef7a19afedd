"""Model and losses: any supported DETR-family detector built or loaded with
`from_pretrained` (`build`), the family table and tiny presets (`families`), the backbone and
its freezing (`backbone`), GIoU / DIoU / CIoU for both the matcher and the box loss of each
family (`losses`), the published and measured fine-tuning recipes (`recipes`), box geometry
(`boxes`) and the check of a checkpoint folder (`model_check`).

Imports: `detr_core.files`, `detr_core.config`, `detr_core.data`.

Public names (other packages import these, not the modules): `backbone_parameters`,
`box_centres`, `build_image_processor`, `build_model`, `check_checkpoint`, `checkpoint_recipe`,
`check_model_folder`, `apply_recipe`, `FAMILIES`, `Family`, `family_of_model`,
`iou_loss_function`, `load_image_processor`, `load_trained_model`, `model_family`,
`num_queries_of`, `PUBLISHED`, `Recipe`, `RECIPE_KEYS`, `recipe_for`, `run_sets`,
`run_value`, `tiny_preset`, `to_original_pixels`.
"""

from __future__ import annotations

from detr_core.model.backbone import backbone_parameters
from detr_core.model.boxes import box_centres, to_original_pixels
from detr_core.model.build import (
    build_image_processor,
    build_model,
    load_image_processor,
    load_trained_model,
    model_family,
    num_queries_of,
)
from detr_core.model.families import FAMILIES, Family, family_of_model, tiny_preset
from detr_core.model.losses import iou_loss_function
from detr_core.model.model_check import check_checkpoint, check_model_folder
from detr_core.model.recipes import (
    PUBLISHED,
    RECIPE_KEYS,
    Recipe,
    apply_recipe,
    checkpoint_recipe,
    recipe_for,
    run_sets,
    run_value,
)

__all__ = [
    "FAMILIES",
    "PUBLISHED",
    "RECIPE_KEYS",
    "Family",
    "Recipe",
    "apply_recipe",
    "backbone_parameters",
    "box_centres",
    "build_image_processor",
    "build_model",
    "check_checkpoint",
    "check_model_folder",
    "checkpoint_recipe",
    "family_of_model",
    "iou_loss_function",
    "load_image_processor",
    "load_trained_model",
    "model_family",
    "num_queries_of",
    "recipe_for",
    "run_sets",
    "run_value",
    "tiny_preset",
    "to_original_pixels",
]
