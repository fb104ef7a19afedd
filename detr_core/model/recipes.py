"""Fine-tuning recipes: each family's published optimizer settings, and a checkpoint's own.

A learning rate that suits one checkpoint is 5-40x off for another (our tiny DETR trains best
at 2e-3 with schedule-free AdamW; DETR-R50 is fine-tuned at 1e-4 or below), so a run or a
search space that leaves these values unset, or states them relative to "the recipe", gets the
ones that belong to its checkpoint. Where a recipe comes from, most specific first:

1. the checkpoint folder's own `recipe.json` (every shipped `builtin:` checkpoint has one,
   measured on the embedded default; any `save_pretrained` folder may carry one);
2. the family's published recipe (`PUBLISHED`), cited to the file that states it.

A recipe fills only `training_args.learning_rate`, `backbone_lr_ratio`,
`training_args.weight_decay` and `training_args.max_grad_norm`, and only where the run leaves
them unset (`apply_recipe`): never EMA decay, warm-up, epochs or image size, which depend on
the run's length and data (they are listed here as the source states them, for the README and
the user, and not applied). The backbone's parameters follow the Trainer's decay / no-decay
split (no decay on biases and norms) at the recipe's weight decay, as every cited recipe does.
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
    """One fine-tuning recipe: the four values a run takes from it, then what the source says
    of the rest (information only), and the source itself."""

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


#: Published fine-tuning / training recipes, keyed by `model_type`. All AdamW.
PUBLISHED: dict[str, Recipe] = {
    "detr": Recipe(
        1e-4, 0.1, 1e-4, 0.1, name="DETR",
        source="facebookresearch/detr main.py (--lr 1e-4 --lr_backbone 1e-5 "
               "--weight_decay 1e-4 --clip_max_norm 0.1)",
        warmup="none", ema="none", schedule="300 epochs, lr x0.1 at 200",
        image_size="shortest edge 480-800, longest <= 1333"),
    "conditional_detr": Recipe(
        1e-4, 0.1, 1e-4, 0.1, name="Conditional DETR",
        source="Atten4Vis/ConditionalDETR main.py (--lr 1e-4 --lr_backbone 1e-5 "
               "--weight_decay 1e-4 --clip_max_norm 0.1)",
        warmup="none", ema="none", schedule="50 epochs, lr x0.1 at 40",
        image_size="shortest edge 480-800, longest <= 1333"),
    "deformable_detr": Recipe(
        2e-4, 0.1, 1e-4, 0.1, name="Deformable DETR",
        source="fundamentalvision/Deformable-DETR main.py (--lr 2e-4 --lr_backbone 2e-5 "
               "--weight_decay 1e-4 --clip_max_norm 0.1)",
        warmup="none", ema="none", schedule="50 epochs, lr x0.1 at 40",
        image_size="shortest edge 480-800, longest <= 1333"),
    "rt_detr": Recipe(
        1e-4, 0.1, 1e-4, 0.1, name="RT-DETR",
        source="lyuwenyu/RT-DETR rtdetr_pytorch/configs/rtdetr/include/optimizer.yml "
               "(lr 1e-4, backbone 1e-5, weight_decay 1e-4, clip_max_norm 0.1)",
        warmup="2,000 steps linear", ema="0.9999, 2,000 warm-up steps",
        schedule="72 epochs (6x), lr x0.1 at 1,000 epochs (i.e. constant)", image_size="640"),
    "rt_detr_v2": Recipe(
        1e-4, 0.1, 1e-4, 0.1, name="RT-DETRv2",
        source="lyuwenyu/RT-DETR rtdetrv2_pytorch/configs/rtdetrv2/include/optimizer.yml "
               "(lr 1e-4, backbone 1e-5, weight_decay 1e-4, clip_max_norm 0.1)",
        warmup="2,000 steps linear", ema="0.9999, 2,000 warm-up steps",
        schedule="72 epochs (6x), constant", image_size="640"),
    "d_fine": Recipe(
        2e-4, 0.1, 1e-4, 0.1, name="D-FINE",
        source="Peterande/D-FINE configs/dfine/include/optimizer.yml (lr 2e-4, backbone "
               "2e-5, weight_decay 1e-4, clip_max_norm 0.1)",
        warmup="500 steps flat-cosine", ema="0.9999, 1,000 warm-up steps",
        schedule="72 epochs, flat then cosine", image_size="640"),
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
        raw = json.loads(path.read_text(encoding="utf-8"))
        recipe = Recipe(**{"name": checkpoint, **raw})
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
    """The recipe of the run's model: its checkpoint's own, else its family's published one.
    None for a `preset` (random weights: a fine-tuning recipe, with its slow backbone, is not
    a recipe for training from scratch) and for a family without a published recipe."""
    from detr_core.model.build import model_family

    if model_cfg.checkpoint is None:
        return None
    own = checkpoint_recipe(str(model_cfg.checkpoint))
    if own is not None:
        return own
    return PUBLISHED.get(model_family(model_cfg).model_type)


def run_value(config: RunConfig, key: str) -> Any:
    """The run's own value of `key` (one of `RECIPE_KEYS`), None when it leaves it unset."""
    if key == "backbone_lr_ratio":
        return config.backbone_lr_ratio
    return config.training_args.get(key.removeprefix("training_args."))


def run_sets(config: RunConfig, key: str) -> bool:
    """Whether the run states `key` (one of `RECIPE_KEYS`) itself."""
    return run_value(config, key) is not None


def apply_recipe(config: RunConfig) -> tuple[RunConfig, dict[str, str]]:
    """`config` with every recipe value it leaves unset filled in, and where each of the four
    values came from (`run` or the recipe's description). Without a recipe the Trainer's
    defaults apply and the backbone trains at the main learning rate."""
    recipe = recipe_for(config.model)
    filled: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in RECIPE_KEYS:
        if run_sets(config, key):
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
