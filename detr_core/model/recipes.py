"""Fine-tuning recipes: a checkpoint's own `recipe.json`, else its family's published settings,
fill the `RECIPE_KEYS` a run leaves unset: a learning rate that suits one checkpoint is 5-40x
off for another (our tiny DETR: 2e-3 with schedule-free AdamW; DETR-R50: 1e-4 or below).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detr_core.config.run_config import ModelConfig, RunConfig
from detr_core.files.builtin_models import resolve_checkpoint
from detr_core.files.errors import UserInputError

RECIPE_FILE = "recipe.json"

#: Run-config keys a recipe fills (when unset) and a space may state relative to the recipe.
RECIPE_KEYS = {
    "training_args.learning_rate": "learning_rate",
    "backbone_lr_ratio": "backbone_lr_ratio",
    "training_args.weight_decay": "weight_decay",
    "training_args.max_grad_norm": "max_grad_norm",
}


@dataclass(frozen=True)
class Recipe:
    """The four values a run takes, the source, and what it says of the rest (information)."""

    learning_rate: float
    backbone_lr_ratio: float
    weight_decay: float
    max_grad_norm: float
    source: str
    warmup: str = ""
    ema: str = ""
    schedule: str = ""
    image_size: str = ""
    name: str = ""  # what the recipe belongs to: a family's title or a checkpoint

    def value(self, key: str) -> float:
        """The recipe's value of run-config key `key` (one of `RECIPE_KEYS`)."""
        return float(getattr(self, RECIPE_KEYS[key]))


_DETR_STYLE = {"warmup": "none", "ema": "none",
               "image_size": "shortest edge 480-800, longest <= 1333"}
_RT_DETR_STYLE = {"warmup": "2,000 steps linear", "ema": "0.9999, 2,000 warm-up steps",
                  "image_size": "640"}

#: Published fine-tuning / training recipes, keyed by `model_type`. All AdamW.
PUBLISHED: dict[str, Recipe] = {
    "detr": Recipe(1e-4, 0.1, 1e-4, 0.1, name="DETR", **_DETR_STYLE,
                   source="facebookresearch/detr main.py (--lr 1e-4 --lr_backbone 1e-5 "
                          "--weight_decay 1e-4 --clip_max_norm 0.1)",
                   schedule="300 epochs, lr x0.1 at 200"),
    "conditional_detr": Recipe(1e-4, 0.1, 1e-4, 0.1, name="Conditional DETR", **_DETR_STYLE,
                               source="Atten4Vis/ConditionalDETR main.py (--lr 1e-4 "
                                      "--lr_backbone 1e-5 --weight_decay 1e-4 --clip_max_norm 0.1)",
                               schedule="50 epochs, lr x0.1 at 40"),
    "deformable_detr": Recipe(2e-4, 0.1, 1e-4, 0.1, name="Deformable DETR", **_DETR_STYLE,
                              source="fundamentalvision/Deformable-DETR main.py (--lr 2e-4 "
                                     "--lr_backbone 2e-5 --weight_decay 1e-4 --clip_max_norm 0.1)",
                              schedule="50 epochs, lr x0.1 at 40"),
    "rt_detr": Recipe(1e-4, 0.1, 1e-4, 0.1, name="RT-DETR", **_RT_DETR_STYLE,
                      source="lyuwenyu/RT-DETR rtdetr_pytorch/configs/rtdetr/include/optimizer.yml "
                             "(lr 1e-4, backbone 1e-5, weight_decay 1e-4, clip_max_norm 0.1)",
                      schedule="72 epochs (6x), lr x0.1 at 1,000 epochs (i.e. constant)"),
    "rt_detr_v2": Recipe(1e-4, 0.1, 1e-4, 0.1, name="RT-DETRv2", **_RT_DETR_STYLE,
                         source="lyuwenyu/RT-DETR rtdetrv2_pytorch/configs/rtdetrv2/include/"
                                "optimizer.yml (lr 1e-4, backbone 1e-5, weight_decay 1e-4, "
                                "clip_max_norm 0.1)", schedule="72 epochs (6x), constant"),
    "d_fine": Recipe(2e-4, 0.1, 1e-4, 0.1, name="D-FINE", image_size="640",
                     source="Peterande/D-FINE configs/dfine/include/optimizer.yml (lr 2e-4, "
                            "backbone 2e-5, weight_decay 1e-4, clip_max_norm 0.1)",
                     warmup="500 steps flat-cosine", ema="0.9999, 1,000 warm-up steps",
                     schedule="72 epochs, flat then cosine"),
}


def checkpoint_recipe(checkpoint: str) -> Recipe | None:
    """The recipe a checkpoint folder carries in `recipe.json` (None when it has none)."""
    try:
        folder = Path(resolve_checkpoint(checkpoint)).expanduser()
    except UserInputError:
        return None
    path = folder / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        recipe = Recipe(**{"name": checkpoint, **json.loads(path.read_text(encoding="utf-8"))})
        for key in RECIPE_KEYS.values():
            if not (isinstance(getattr(recipe, key), int | float)
                    and math.isfinite(getattr(recipe, key)) and getattr(recipe, key) >= 0):
                raise ValueError(f"{key} must be a number >= 0")
    except (OSError, ValueError, TypeError) as exc:
        detail = " ".join(str(exc).split())
        raise UserInputError(f"not a valid recipe: {detail}", source=path,
                             key="model.checkpoint") from None
    return recipe


def recipe_for(model_cfg: ModelConfig) -> Recipe | None:
    """The checkpoint's own recipe, else its family's published one; None for a `preset`."""
    from detr_core.model.build import model_family

    if model_cfg.checkpoint is None:
        return None
    own = checkpoint_recipe(str(model_cfg.checkpoint))
    return own if own is not None else PUBLISHED.get(model_family(model_cfg).model_type)


def run_value(config: RunConfig, key: str) -> Any:
    """The run's own value of `key` (one of `RECIPE_KEYS`), None when it leaves it unset."""
    if key == "backbone_lr_ratio":
        return config.backbone_lr_ratio
    return config.training_args.get(key.removeprefix("training_args."))


def apply_recipe(config: RunConfig) -> tuple[RunConfig, dict[str, str]]:
    """`config` with the recipe values it leaves unset filled in, and where each came from."""
    recipe = recipe_for(config.model)
    filled: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in RECIPE_KEYS:
        if run_value(config, key) is not None:
            sources[key] = "run"
        elif recipe is not None:
            filled[key] = recipe.value(key)
            sources[key] = f"recipe of {recipe.name}"
        else:
            sources[key] = "default"
    args = dict(config.training_args)
    args.update({k.removeprefix("training_args."): v for k, v in filled.items()
                 if k.startswith("training_args.")})
    ratio = filled.get("backbone_lr_ratio", config.backbone_lr_ratio)
    return config.model_copy(update={"training_args": args, "backbone_lr_ratio": ratio}), sources
