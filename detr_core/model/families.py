"""The DETR family members detr_core fine-tunes, by `model_type`, what differs between them
(loss, scoring, image processor), and their tiny from-scratch presets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from detr_core.files.builtin_models import resolve_checkpoint
from detr_core.files.errors import UserInputError


@dataclass(frozen=True)
class Family:
    """One supported member of the DETR family (keyed by its `config.json` `model_type`)."""

    model_type: str
    title: str
    loss_family: Literal["detr", "deformable", "rt_detr", "d_fine"]
    scoring: Literal["softmax", "sigmoid"]
    processor_class: str
    #: (query, class) pairs a sigmoid family keeps per image, as transformers'
    #: `post_process_object_detection` does (None: `num_queries`, RT-DETR / D-FINE).
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


def family_of_checkpoint(checkpoint: str) -> Family | None:
    """The family a checkpoint's `config.json` names (None when it is not on this machine)."""
    config_path = Path(resolve_checkpoint(checkpoint)).expanduser() / "config.json"
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
    return family(model_type, key="model.checkpoint") if isinstance(model_type, str) else None


#: DETR's tiny preset (the shipped checkpoints were pretrained from it).
TINY_DETR: dict[str, Any] = {
    "d_model": 64, "encoder_layers": 1, "decoder_layers": 2, "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128, "encoder_attention_heads": 4, "decoder_attention_heads": 4,
    "num_queries": 10,  # at most 3 objects per image: fewer queries match faster
    "dropout": 0.0, "auxiliary_loss": True,
    # 1/sqrt(d_model): with 0.02 every query stayed on the mean box (nothing after 2,500 steps)
    "init_std": 0.125,
}

_TRANSFORMER = {"d_model": 64, "encoder_layers": 1, "decoder_layers": 3, "encoder_ffn_dim": 128,
                "decoder_ffn_dim": 128, "encoder_attention_heads": 4,
                "decoder_attention_heads": 4, "num_queries": 30, "dropout": 0.0,
                "auxiliary_loss": True}
# RT-DETR / D-FINE: the encoder reads stages 2-4; a random backbone needs live batch norms;
# `anchor_image_size=None`: anchors follow the input size instead of a fixed 640
_RT_DETR = {"d_model": 64, "encoder_hidden_dim": 64, "encoder_in_channels": [32, 64, 128],
            "feat_strides": [8, 16, 32], "decoder_in_channels": [64, 64, 64],
            "encoder_ffn_dim": 128, "decoder_ffn_dim": 128, "decoder_layers": 3,
            "num_queries": 30, "num_denoising": 30, "freeze_backbone_batch_norms": False,
            "anchor_image_size": None, "dropout": 0.0}

TINY_PRESETS: dict[str, dict[str, Any]] = {
    "detr": TINY_DETR,
    # DETR's unit-scale init (with 0.02, overfitting 8 images for 500 steps: mAP@.5 0.94, not 1)
    "conditional_detr": {**_TRANSFORMER, "init_std": 0.125},
    "deformable_detr": {**_TRANSFORMER, "num_feature_levels": 3},
    "rt_detr": _RT_DETR,
    "rt_detr_v2": _RT_DETR,
    "d_fine": {**_RT_DETR, "depth_mult": 0.34},
}


def _tiny_backbone(multi_scale: bool) -> Any:
    from transformers import ResNetConfig

    # single scale: stage3, a 6x6 map at 96 px (stage4: 3x3); multi-scale: 12, 6, 3
    return ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                        layer_type="basic",
                        out_features=["stage2", "stage3", "stage4"] if multi_scale else ["stage3"])


def tiny_preset(model_type: str) -> dict[str, Any]:
    """The tiny preset's config fields for `model_type` (a copy)."""
    return dict(TINY_PRESETS[family(model_type).model_type])


def tiny_config(model_type: str, **fields: Any) -> Any:
    """A transformers config of the tiny preset for `model_type`, `fields` on top."""
    from transformers import AutoConfig

    multi_scale = model_type not in ("detr", "conditional_detr")
    return AutoConfig.for_model(model_type, backbone_config=_tiny_backbone(multi_scale),
                                **{**tiny_preset(model_type), **fields})
