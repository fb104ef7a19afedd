"""Build the `DetrForObjectDetection` and image processor of a run.

Two sources: a checkpoint (Hub name, `save_pretrained` folder or `builtin:<name>`, loaded with
`from_pretrained` and given the dataset's label set: when the checkpoint was trained on other
classes its classification head is re-initialised, the rest is fine-tuned) or the `tiny`
preset (random weights, ResNet-ish backbone of ~0.3 M parameters, builds offline in well under
a second once transformers is imported; for tests and for pretraining). The backbone is then
frozen or left trainable as the run says; note that transformers freezes an HF ResNet backbone
at construction, so "trainable" has to be set explicitly.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig
from transformers.utils import logging as hf_logging

from detr_core.config import ModelConfig
from detr_core.data import LabelMap
from detr_core.files import UserInputError, resolve_checkpoint
from detr_core.model.losses import DetrIouLoss

# "Loading weights" / "Writing model shards" bars for a 2 MB model are noise on every console
hf_logging.disable_progress_bar()

TINY_PRESET: dict[str, Any] = {
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


def _tiny_backbone() -> ResNetConfig:
    return ResNetConfig(
        embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
        layer_type="basic", out_features=["stage3"],  # 6x6 map at 96 px (stage4: 3x3)
    )


def build_image_processor(model_cfg: ModelConfig) -> DetrImageProcessor:
    """The checkpoint's processor (or DETR defaults) resized to a square canvas of image_size."""
    processor = None
    checkpoint = resolve_checkpoint(model_cfg.checkpoint) if model_cfg.checkpoint else None
    if checkpoint is not None and (Path(checkpoint) / "preprocessor_config.json").is_file():
        processor = DetrImageProcessor.from_pretrained(checkpoint)
    if processor is None:
        processor = DetrImageProcessor()
    size = model_cfg.image_size
    processor.size = {"shortest_edge": size, "longest_edge": size}
    processor.pad_size = {"height": size, "width": size}
    processor.do_pad = True
    return processor


def num_queries_of(model_cfg: ModelConfig) -> int | None:
    """How many objects per image the model can find (DETR's `num_queries`), without building
    it: the override, the preset's, or the checkpoint folder's `config.json` (None when the
    checkpoint is not on this machine)."""
    import json

    if "num_queries" in model_cfg.config_overrides:
        return int(model_cfg.config_overrides["num_queries"])
    if model_cfg.preset == "tiny":
        return int(TINY_PRESET["num_queries"])
    config = Path(resolve_checkpoint(str(model_cfg.checkpoint))) / "config.json"
    try:
        return int(json.loads(config.read_text(encoding="utf-8"))["num_queries"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build_model(model_cfg: ModelConfig, label_map: LabelMap, iou_loss: str,
                freeze_backbone: bool) -> DetrForObjectDetection:
    """A DETR for `label_map`'s classes, with the run's IoU loss installed and backbone set."""
    labels = {"num_labels": len(label_map.names), "id2label": label_map.id2label,
              "label2id": label_map.label2id}
    overrides = dict(model_cfg.config_overrides)
    _check_override_keys(overrides)
    if model_cfg.preset == "tiny":
        try:
            config = DetrConfig(
                backbone_config=_tiny_backbone(), use_timm_backbone=False,
                use_pretrained_backbone=False, **{**TINY_PRESET, **overrides}, **labels,
            )
        except (TypeError, ValueError, StrictDataclassError) as exc:
            raise UserInputError(_one_line(exc), key="model.config_overrides") from None
        model = DetrForObjectDetection(config)
        # Object queries as in the original DETR (nn.Embedding's N(0, 1)): distinct queries
        # from the first step, so they specialise instead of collapsing onto one box.
        torch.nn.init.normal_(model.model.query_position_embeddings.weight)
    else:
        model = _from_checkpoint(str(model_cfg.checkpoint), labels, overrides)
    if overrides:
        check_model_runs(model)
    model.loss_function = DetrIouLoss(iou_loss)
    set_backbone_trainable(model, trainable=not freeze_backbone)
    return model


def check_model_runs(model: DetrForObjectDetection, size: int = 64) -> None:
    """One forward pass on a blank image: overrides that build but cannot run are refused.

    `config_overrides` fields can agree with DetrConfig and still not fit each other or the
    checkpoint (`d_model: 65`: the position embedding makes 64 channels, the projection 65),
    which otherwise ends the first training step in a tensor-size traceback with the run's
    folder written. In eval mode and without gradients: no dropout, so no random numbers
    drawn, and the training that follows is the same as without the check.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(pixel_values=torch.zeros(1, 3, size, size),
                  pixel_mask=torch.ones(1, size, size, dtype=torch.long))
    except (RuntimeError, ValueError, IndexError) as exc:
        raise UserInputError(f"the model does not run with these overrides: {_one_line(exc)}",
                             key="model.config_overrides") from None
    finally:
        model.train(was_training)


def _check_override_keys(overrides: dict[str, Any]) -> None:
    """DetrConfig accepts unknown keys silently; a typo in the run YAML must not pass."""
    from detr_core.config import config_override_type

    for key in overrides:
        config_override_type(key)


def _from_checkpoint(checkpoint: str, labels: dict[str, Any],
                     overrides: dict[str, Any]) -> DetrForObjectDetection:
    """`from_pretrained` with the run's label set; a head for other classes starts afresh."""
    source = resolve_checkpoint(checkpoint)
    try:
        previous = DetrConfig.from_pretrained(source).id2label
        with _quiet_load_report():
            model, info = DetrForObjectDetection.from_pretrained(
                source, ignore_mismatched_sizes=True, output_loading_info=True, **labels,
                **overrides)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserInputError(f"cannot load {checkpoint!r}: {first}",
                             key="model.checkpoint") from None
    except (TypeError, ValueError, StrictDataclassError) as exc:
        if not overrides:
            raise
        raise UserInputError(_one_line(exc), key="model.config_overrides") from None
    old_names = [previous.get(i) for i in range(len(previous))]
    new_names = list(labels["id2label"].values())
    if old_names != new_names:
        reset_classification_head(model)
        print(f"model.checkpoint {checkpoint}: new classification head for "
              f"{', '.join(new_names)} (the checkpoint's was for {', '.join(map(str, old_names))})",
              file=sys.stderr)
    _warn_unloaded(checkpoint, info)
    return model


@contextlib.contextmanager
def _quiet_load_report() -> Iterator[None]:
    """transformers 5 logs a many-line LOAD REPORT for any re-initialised weight; the head
    is re-initialised on purpose here, and anything else is said in one line instead."""
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _warn_unloaded(checkpoint: str, info: dict[str, Any]) -> None:
    """One warning line naming weights the checkpoint did not provide (apart from the head)."""
    head = "class_labels_classifier."
    missing = sorted(k for k in info.get("missing_keys", []) if not k.startswith(head))
    mismatched = sorted(k[0] if isinstance(k, tuple) else str(k)
                        for k in info.get("mismatched_keys", []))
    mismatched = [k for k in mismatched if not k.startswith(head)]
    unexpected = sorted(info.get("unexpected_keys", []))
    for what, keys in (("not in the checkpoint, newly initialised", missing),
                       ("of another shape in the checkpoint, newly initialised", mismatched),
                       ("in the checkpoint but not used by this model", unexpected)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            print(f"warning: model.checkpoint {checkpoint}: {len(keys)} weights {what}: "
                  f"{shown}", file=sys.stderr)


def reset_classification_head(model: DetrForObjectDetection) -> None:
    """Fresh class logits for a new label set (as DETR initialises them), boxes kept.

    `ignore_mismatched_sizes` only re-initialises a head of another *size*; a checkpoint trained
    on as many classes as the dataset has, but other ones, would keep classifying by its old
    classes. Checked by label names, so any label set is handled the same way.
    """
    head = model.class_labels_classifier
    torch.nn.init.normal_(head.weight, mean=0.0, std=model.config.init_std)
    torch.nn.init.zeros_(head.bias)


def _one_line(exc: Exception) -> str:
    """DetrConfig's strict-dataclass errors span several lines; a user error is one."""
    return " ".join(str(exc).split()) or type(exc).__name__


def load_trained_model(model_dir: str | Path, iou_loss: str = "giou") -> DetrForObjectDetection:
    """Reload a `save_pretrained` folder written by a run (its best step) for evaluation."""
    model = DetrForObjectDetection.from_pretrained(str(model_dir))
    model.loss_function = DetrIouLoss(iou_loss)
    return model


def backbone_parameters(model: DetrForObjectDetection) -> list[Any]:
    """Exactly the parameters `freeze_backbone` acts on: the conv encoder's."""
    return list(model.model.backbone.parameters())


def set_backbone_trainable(model: DetrForObjectDetection, trainable: bool) -> None:
    """Freeze (diary 12_5..12_7) or unfreeze every backbone parameter."""
    if trainable:
        model.model.unfreeze_backbone()
    else:
        model.model.freeze_backbone()
