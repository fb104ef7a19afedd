"""The DETR family as transformers builds it: which members detr_core fine-tunes, and what
differs between them.

Every member is an `AutoModelForObjectDetection` that computes its own loss when `labels` are
passed; they differ in three things a run must follow, all read from the checkpoint's
`config.json` (`model_type`) or, for a from-scratch preset, from `model.family`:

- the **loss family** (`loss_family`), i.e. which transformers loss module holds the matcher
  and box loss whose IoU term `detr_core.model.losses` swaps: `detr`
  (`loss_for_object_detection`: DETR), `deformable` (`loss_deformable_detr`: Conditional and
  Deformable DETR), `rt_detr` (`loss_rt_detr`: RT-DETR, RT-DETRv2) and `d_fine`
  (`loss_d_fine`, a subclass of RT-DETR's: D-FINE);
- the **scores** (`scoring`): DETR's softmax over the classes plus "no object", one detection
  a query; the others' sigmoid (focal / varifocal) per class, the top-k (query, class) pairs
  kept (`detr_core.evaluation.metrics`);
- the **image processor**, which carries the family's normalisation and resize rule.

`tiny_config` builds the small from-scratch configs (one ~0.3 M-parameter ResNet backbone for
all; single scale for DETR / Conditional DETR, stages 2-4 for the multi-scale members), offline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from detr_core.files.builtin_models import resolve_checkpoint
from detr_core.files.errors import UserInputError

Scoring = Literal["softmax", "sigmoid"]


@dataclass(frozen=True)
class Family:
    """One supported member of the DETR family (keyed by its `config.json` `model_type`)."""

    model_type: str
    title: str
    loss_family: Literal["detr", "deformable", "rt_detr", "d_fine"]
    scoring: Scoring
    processor_class: str
    #: How many (query, class) pairs a sigmoid family keeps per image (None: one per query,
    #: as many as the model has queries): transformers' `post_process_object_detection`
    #: defaults, top 100 for Conditional / Deformable DETR, `num_queries` for RT-DETR / D-FINE.
    top_k: int | None = None


FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("detr", "DETR", "detr", "softmax", "DetrImageProcessor"),
    Family("conditional_detr", "Conditional DETR", "deformable", "sigmoid",
           "ConditionalDetrImageProcessor", top_k=100),
    Family("deformable_detr", "Deformable DETR", "deformable", "sigmoid",
           "DeformableDetrImageProcessor", top_k=100),
    Family("rt_detr", "RT-DETR", "rt_detr", "sigmoid", "RTDetrImageProcessor"),
    Family("rt_detr_v2", "RT-DETRv2", "rt_detr", "sigmoid", "RTDetrImageProcessor"),
    Family("d_fine", "D-FINE", "d_fine", "sigmoid", "RTDetrImageProcessor"),
)}
FAMILY_NAMES = tuple(FAMILIES)


def family(model_type: str, key: str = "model.family", source: Any = None) -> Family:
    """The supported family of `model_type`; anything else is refused in one line."""
    found = FAMILIES.get(model_type)
    if found is None:
        raise UserInputError(
            f"model_type {model_type!r} is not a supported DETR-family detector (supported: "
            f"{', '.join(FAMILY_NAMES)})", source=source, key=key)
    return found


def family_of_model(model: Any) -> Family:
    """The family of a built model (its `config.model_type`)."""
    return family(str(model.config.model_type), key="model")


def checkpoint_model_type(checkpoint: str) -> str | None:
    """`model_type` from a checkpoint's `config.json` (folder, `builtin:` or a Hub id in the
    local cache), without loading weights; None when no config is on this machine."""
    folder = Path(resolve_checkpoint(checkpoint)).expanduser()
    config_path = folder / "config.json"
    if not config_path.is_file():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(checkpoint, "config.json")
        except ValueError:  # not a valid repo id either
            cached = None
        if not isinstance(cached, str):
            return None
        config_path = Path(cached)
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return model_type if isinstance(model_type, str) else None


def family_of_checkpoint(checkpoint: str) -> Family | None:
    """The family a checkpoint's `config.json` names (None when it is not on this machine);
    an unsupported `model_type` is refused naming the checkpoint."""
    model_type = checkpoint_model_type(checkpoint)
    if model_type is None:
        return None
    return family(model_type, key="model.checkpoint")


# ---------------------------------------------------------------------------------------------
# tiny from-scratch configs (tests, pretraining the shipped checkpoints)

#: DETR's tiny preset (unchanged since the first shipped checkpoint was pretrained from it).
TINY_DETR: dict[str, Any] = {
    "d_model": 64,
    "encoder_layers": 1,
    "decoder_layers": 2,
    "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "num_queries": 10,  # at most 3 objects per image: fewer queries match faster
    "dropout": 0.0,
    "auxiliary_loss": True,
    # transformers initialises every linear layer and embedding with N(0, 0.02), BERT-style:
    # harmless when fine-tuning, but a from-scratch d_model=64 transformer then starts with
    # vanishing activations and every query predicting the same mean box (measured: no
    # detection after 2,500 steps). 1/sqrt(d_model) keeps activations at unit scale.
    "init_std": 0.125,
}

_TRANSFORMER = {"d_model": 64, "encoder_layers": 1, "decoder_layers": 3, "encoder_ffn_dim": 128,
                "decoder_ffn_dim": 128, "encoder_attention_heads": 4,
                "decoder_attention_heads": 4, "num_queries": 30, "dropout": 0.0,
                "auxiliary_loss": True}
# RT-DETR / D-FINE: the hybrid encoder reads stages 2-4 (32 / 64 / 128 channels at strides
# 8 / 16 / 32); a random backbone needs live batch norms; `anchor_image_size=None` makes the
# anchors follow the input size instead of a fixed 640.
_RT_DETR = {"d_model": 64, "encoder_hidden_dim": 64, "encoder_in_channels": [32, 64, 128],
            "feat_strides": [8, 16, 32], "decoder_in_channels": [64, 64, 64],
            "encoder_ffn_dim": 128, "decoder_ffn_dim": 128, "decoder_layers": 3,
            "num_queries": 30, "num_denoising": 30, "freeze_backbone_batch_norms": False,
            "anchor_image_size": None, "dropout": 0.0}

TINY_PRESETS: dict[str, dict[str, Any]] = {
    "detr": TINY_DETR,
    # the same unit-scale init as DETR's preset (transformers' 0.02 leaves a d_model-64 model's
    # scores low for long: overfitting 8 images, 500 steps, train mAP@.5 0.94 -> 1.0)
    "conditional_detr": {**_TRANSFORMER, "init_std": 0.125},
    "deformable_detr": {**_TRANSFORMER, "num_feature_levels": 3},
    "rt_detr": _RT_DETR,
    "rt_detr_v2": _RT_DETR,
    "d_fine": {**_RT_DETR, "depth_mult": 0.34},
}


def _tiny_backbone(multi_scale: bool) -> Any:
    from transformers import ResNetConfig

    return ResNetConfig(
        embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
        layer_type="basic",
        # single scale: stage3, a 6x6 map at 96 px (stage4: 3x3); multi-scale: 12, 6, 3
        out_features=["stage2", "stage3", "stage4"] if multi_scale else ["stage3"],
    )


def tiny_preset(model_type: str) -> dict[str, Any]:
    """The tiny preset's config fields for `model_type` (a copy)."""
    return dict(TINY_PRESETS[family(model_type).model_type])


def tiny_config(model_type: str, **fields: Any) -> Any:
    """A transformers config of the tiny preset for `model_type`, `fields` on top (labels,
    `model.config_overrides`). Raises the config class's own errors for bad fields."""
    from transformers import AutoConfig

    multi_scale = model_type not in ("detr", "conditional_detr")
    return AutoConfig.for_model(model_type, backbone_config=_tiny_backbone(multi_scale),
                                **{**tiny_preset(model_type), **fields})
