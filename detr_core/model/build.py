"""The backbone of a DETR-family detector: which parameters it has, freezing it, and its
batch norms.

Every supported member keeps its convolutional backbone at `model.model.backbone` (DETR's,
Conditional and Deformable DETR's conv encoder, RT-DETR's and D-FINE's). `freeze_backbone`
(diary 12_5..12_7) and the backbone learning rate (`backbone_lr_ratio`, an optimizer group of
its own: `detr_core.training.trainer`) act on exactly `backbone_parameters`.

Batch norms: DETR, Conditional and Deformable DETR replace every backbone batch norm with a
frozen one when the model is built (fixed statistics and affine, whatever the run says).
RT-DETR and D-FINE do so when `freeze_backbone_batch_norms` is true (their default; the tiny
from-scratch presets set it false, a random backbone needs live ones); a frozen backbone then
also gets its live batch norms frozen here (torchvision's `FrozenBatchNorm2d`, same state-dict
names), so nothing in it moves, not even the running statistics.

Build the detector and image processor of a run, for any supported DETR-family member.

Two sources: a checkpoint (Hub name, `save_pretrained` folder or `builtin:<name>`, loaded with
`AutoModelForObjectDetection.from_pretrained` and given the dataset's label set: when the
checkpoint was trained on other classes every parameter shaped by the number of labels is
re-initialised, the rest is fine-tuned; a `num_queries` override re-initialises the query
embeddings the same way, said in one line) or the `tiny` preset of a family (random weights,
ResNet-ish backbone of ~0.3 M parameters, builds offline in well under a second once
transformers is imported; for tests and for pretraining). The family (`detr_core.model.families`)
is read from the checkpoint's `config.json`, or is the preset's `model.family`; it picks the
loss (with the run's IoU variant, `detr_core.model.losses`), the image processor and the
post-processing. The backbone is then frozen or left trainable as the run says
(`detr_core.model.build`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError
from torchvision.ops import FrozenBatchNorm2d
from transformers.utils import logging as hf_logging

from detr_core.config.run_config import ModelConfig
from detr_core.data.coco import LabelMap
from detr_core.files.builtin_models import resolve_checkpoint
from detr_core.files.errors import UserInputError
from detr_core.model.families import (
    Family,
    family,
    family_of_checkpoint,
    family_of_model,
    tiny_config,
    tiny_preset,
)
from detr_core.model.losses import iou_loss_function


def backbone_module(model: Any) -> torch.nn.Module:
    """The convolutional backbone of any supported family."""
    return model.model.backbone


def backbone_parameters(model: Any) -> list[torch.nn.Parameter]:
    """Exactly the parameters `freeze_backbone` and the backbone learning rate act on."""
    return list(backbone_module(model).parameters())


def set_backbone_trainable(model: Any, trainable: bool) -> None:
    """Freeze or unfreeze every backbone parameter (transformers freezes an HF ResNet
    backbone's early stages at construction for DETR-style families: "trainable" is set
    explicitly); a frozen one also gets its live batch norms frozen."""
    backbone = backbone_module(model)
    for parameter in backbone.parameters():
        parameter.requires_grad_(trainable)
    if not trainable:
        freeze_batch_norms(backbone)


def freeze_batch_norms(module: torch.nn.Module) -> int:
    """Replace every `BatchNorm2d` below `module` by a `FrozenBatchNorm2d` holding its
    statistics and affine (the state-dict names stay); returns how many were replaced."""
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight)
                frozen.bias.copy_(child.bias)
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen.to(child.weight.device))
            replaced += 1
        else:
            replaced += freeze_batch_norms(child)
    return replaced


# "Loading weights" / "Writing model shards" bars for a 2 MB model are noise on every console
hf_logging.disable_progress_bar()

PREPROCESSOR_FILE = "preprocessor_config.json"


def model_family(model_cfg: ModelConfig) -> Family:
    """The family of the run's model: the preset's `family` (DETR unless given), else the one
    its checkpoint's `config.json` names."""
    if model_cfg.preset is not None:
        return family(model_cfg.family or "detr")
    found = family_of_checkpoint(str(model_cfg.checkpoint))
    if found is None:
        raise UserInputError(f"{model_cfg.checkpoint!r}: no config.json on this machine to read "
                             "the model's family from (download a Hub model first, e.g. `hf "
                             "download NAME`, or give a save_pretrained folder)",
                             key="model.checkpoint")
    return found


def build_image_processor(model_cfg: ModelConfig) -> Any:
    """The checkpoint's image processor (else its family's defaults) set to `image_size`."""
    checkpoint = resolve_checkpoint(model_cfg.checkpoint) if model_cfg.checkpoint else None
    if checkpoint is not None and (Path(checkpoint) / PREPROCESSOR_FILE).is_file():
        processor = load_image_processor(checkpoint)
    else:
        import transformers

        processor = getattr(transformers, model_family(model_cfg).processor_class)()
    return fit_processor(processor, model_cfg.image_size)


def load_image_processor(folder: str | Path) -> Any:
    """The image processor a model folder was saved with (its own class, from its JSON)."""
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(str(folder))


def fit_processor(processor: Any, size: int) -> Any:
    """Resize to `size` by the processor's own rule: a fixed `height` x `width` (RT-DETR and
    D-FINE stretch every image to the square, as they were trained) stays a fixed square; a
    `shortest_edge` / `longest_edge` rule (DETR, Conditional and Deformable DETR) keeps the
    aspect ratio, longest edge `size`, padded to a square canvas of `size`."""
    current = processor.size  # a SizeDict, or a dict in older processors
    fixed = (current.get("height"), current.get("width")) if isinstance(current, dict) else (
        getattr(current, "height", None), getattr(current, "width", None))
    if None not in fixed:
        processor.size = {"height": size, "width": size}
        return processor
    processor.size = {"shortest_edge": size, "longest_edge": size}
    processor.pad_size = {"height": size, "width": size}
    processor.do_pad = True
    return processor


def num_queries_of(model_cfg: ModelConfig) -> int | None:
    """How many objects per image the model can find (`num_queries`), without building it:
    the override, the preset's, or the checkpoint folder's `config.json` (None when the
    checkpoint is not on this machine)."""
    import json

    if "num_queries" in model_cfg.config_overrides:
        return int(model_cfg.config_overrides["num_queries"])
    if model_cfg.preset == "tiny":
        return int(tiny_preset(model_cfg.family or "detr")["num_queries"])
    config = Path(resolve_checkpoint(str(model_cfg.checkpoint))) / "config.json"
    try:
        return int(json.loads(config.read_text(encoding="utf-8"))["num_queries"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build_model(model_cfg: ModelConfig, label_map: LabelMap, iou_loss: str,
                freeze_backbone: bool) -> Any:
    """A detector for `label_map`'s classes, with the run's IoU loss installed and backbone set."""
    from transformers import AutoModelForObjectDetection

    labels = {"num_labels": len(label_map.names), "id2label": label_map.id2label,
              "label2id": label_map.label2id}
    overrides = dict(model_cfg.config_overrides)
    fam = model_family(model_cfg)
    check_override_keys(overrides, fam)
    if model_cfg.preset == "tiny":
        try:
            config = tiny_config(fam.model_type, **overrides, **labels)
        except (TypeError, ValueError, StrictDataclassError) as exc:
            raise UserInputError(_one_line(exc), key="model.config_overrides") from None
        model = AutoModelForObjectDetection.from_config(config)
        init_queries(model)
    else:
        model = _from_checkpoint(str(model_cfg.checkpoint), labels, overrides)
    if overrides:
        check_model_runs(model, min(model_cfg.image_size, CHECK_SIZE_CAP))
    use_iou_loss(model, iou_loss)
    set_backbone_trainable(model, trainable=not freeze_backbone)
    return model


def use_iou_loss(model: Any, iou_loss: str) -> None:
    """Install the `iou_loss` variant's loss on `model` and record it in its config, so every
    checkpoint and `best_model/` it is saved to says which loss it trained with
    (`config.json`: `"iou_loss"`, read back by `load_trained_model`)."""
    model.config.iou_loss = iou_loss
    model.loss_function = iou_loss_function(family_of_model(model).model_type, iou_loss)


def init_queries(model: Any) -> None:
    """DETR's object queries as in the original DETR (nn.Embedding's N(0, 1)), not
    transformers' N(0, init_std): distinct queries from the first step, so they specialise
    instead of collapsing onto one box. Other families keep their own init."""
    if model.config.model_type == "detr":
        torch.nn.init.normal_(model.model.query_position_embeddings.weight)


#: The largest square `check_model_runs` tries (the run's own size below it): a 640 px image
#: has more encoder positions than any `num_queries` selects, and stays cheap on a CPU.
CHECK_SIZE_CAP = 640


def check_model_runs(model: Any, size: int = 64) -> None:
    """One forward pass on a blank image of the run's size: overrides that build but cannot
    run are refused.

    `config_overrides` fields can agree with the config class and still not fit each other or
    the checkpoint (`d_model: 65`: the position embedding makes 64 channels, the projection
    65), which otherwise ends the first training step in a tensor-size traceback with the run's
    folder written. At the run's size, since RT-DETR / D-FINE select `num_queries` of the
    encoder's positions, which a small blank image may not have. In eval mode and without
    gradients: no dropout, so no random numbers drawn, and the training that follows is the
    same as without the check.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(pixel_values=torch.zeros(1, 3, size, size),
                  pixel_mask=torch.ones(1, size, size, dtype=torch.long))
    except (RuntimeError, ValueError, IndexError, AssertionError) as exc:
        raise UserInputError(f"the model does not run with these overrides: {_one_line(exc)}",
                             key="model.config_overrides") from None
    finally:
        model.train(was_training)


def check_override_keys(overrides: dict[str, Any], fam: Family) -> None:
    """Config classes accept unknown keys silently; a typo in the run YAML must not pass."""
    from transformers import AutoConfig

    config_class = type(AutoConfig.for_model(fam.model_type))
    fields = {f.name for f in dataclasses.fields(config_class)} | {"num_labels"}
    for key in overrides:
        if key not in fields:
            raise UserInputError(f"not a {config_class.__name__} field ({fam.title})",
                                 key=f"model.config_overrides.{key}")


def _from_checkpoint(checkpoint: str, labels: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """`from_pretrained` with the run's label set; label-shaped parameters start afresh when
    the checkpoint's classes are not the dataset's."""
    from transformers import AutoConfig, AutoModelForObjectDetection

    source = resolve_checkpoint(checkpoint)
    try:
        previous_config = AutoConfig.from_pretrained(source)
        previous = previous_config.id2label
        with _quiet_load_report():
            model, info = AutoModelForObjectDetection.from_pretrained(
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
    label_shaped = label_shaped_parameters(model)
    if old_names != new_names:
        reset_parameters(model, label_shaped)
        print(f"model.checkpoint {checkpoint}: new classification head for "
              f"{', '.join(new_names)} (the checkpoint's was for {', '.join(map(str, old_names))})",
              file=sys.stderr)
    query_shaped: set[str] = set()
    old_queries = getattr(previous_config, "num_queries", None)
    if model.config.num_queries != old_queries:
        query_shaped = parameters_shaped_by(model, "num_queries")
        reset_parameters(model, query_shaped)
        print(f"model.checkpoint {checkpoint}: num_queries {old_queries} -> "
              f"{model.config.num_queries} (model.config_overrides): " + (
                  f"the query embeddings ({', '.join(sorted(query_shaped))}) start afresh as "
                  f"in a new {family_of_model(model).title} model; every other weight is the "
                  "checkpoint's"
                  if query_shaped else "no weight depends on it (the decoder's queries are the "
                  f"encoder's top {model.config.num_queries} proposals)"), file=sys.stderr)
    _warn_unloaded(checkpoint, info, label_shaped | query_shaped)
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


def _warn_unloaded(checkpoint: str, info: dict[str, Any], label_shaped: set[str]) -> None:
    """One warning line naming weights the checkpoint did not provide (apart from the ones
    shaped by the label set, re-initialised on purpose)."""
    missing = sorted(k for k in info.get("missing_keys", []) if k not in label_shaped)
    mismatched = sorted(k[0] if isinstance(k, tuple) else str(k)
                        for k in info.get("mismatched_keys", []))
    mismatched = [k for k in mismatched if k not in label_shaped]
    unexpected = sorted(info.get("unexpected_keys", []))
    for what, keys in (("not in the checkpoint, newly initialised", missing),
                       ("of another shape in the checkpoint, newly initialised", mismatched),
                       ("in the checkpoint but not used by this model", unexpected)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            print(f"warning: model.checkpoint {checkpoint}: {len(keys)} weights {what}: "
                  f"{shown}", file=sys.stderr)


def label_shaped_parameters(model: Any) -> set[str]:
    """State-dict names of every tensor whose shape depends on the number of labels: DETR's
    `class_labels_classifier`, but also e.g. RT-DETR's per-layer `class_embed`,
    `enc_score_head` and `denoising_class_embed`, whatever a family names them."""
    return parameters_shaped_by(model, "num_labels")


def parameters_shaped_by(model: Any, field: str) -> set[str]:
    """State-dict names of every tensor whose shape depends on the config's integer `field`
    (`num_labels`; `num_queries`: DETR's, Conditional and Deformable DETR's
    `query_position_embeddings`, none for RT-DETR / D-FINE, whose queries are selected).

    Found by building the model's architecture twice on the `meta` device (no memory, no
    random numbers), with its value of `field` and one more, and comparing shapes.
    """
    from transformers import AutoModelForObjectDetection

    shapes = []
    for extra in (0, 1):
        fields = {field: getattr(model.config, field) + extra}
        if field == "num_labels":
            fields |= {"id2label": None, "label2id": None}
        config = type(model.config).from_dict({**model.config.to_dict(), **fields})
        with torch.device("meta"), _quiet_load_report():
            built = AutoModelForObjectDetection.from_config(config)
        shapes.append({k: tuple(v.shape) for k, v in built.state_dict().items()})
    return {k for k, shape in shapes[0].items() if shapes[1].get(k) != shape}


def reset_parameters(model: Any, names: set[str]) -> None:
    """Re-initialise the tensors `names` (the label-shaped ones, `label_shaped_parameters`, or
    the query-shaped ones) as a new model of the same config initialises them (each family's
    own init: DETR's N(0, init_std) classifier and N(0, 1) queries as its preset's, the
    focal-loss prior bias of the sigmoid families), everything else kept as loaded.

    `ignore_mismatched_sizes` only re-initialises tensors of another *size*, with
    transformers' init (DETR's queries N(0, init_std), not its preset's); a checkpoint
    trained on as many classes as the dataset has, but other ones, would keep classifying by
    its old classes. Checked by label names, so any label set is handled the same way. The
    fresh model is drawn on a forked random stream: the run's later random numbers (data
    order, dropout) are the same whether or not a head was reset.
    """
    from transformers import AutoModelForObjectDetection

    with torch.random.fork_rng(devices=[]), _quiet_load_report():
        fresh_model = AutoModelForObjectDetection.from_config(model.config)
        init_queries(fresh_model)
        fresh = fresh_model.state_dict()
    own = model.state_dict()
    with torch.no_grad():
        for name in names:
            own[name].copy_(fresh[name])


def _one_line(exc: Exception) -> str:
    """Config classes' strict-dataclass errors span several lines; a user error is one."""
    return " ".join(str(exc).split()) or type(exc).__name__


def load_trained_model(model_dir: str | Path, iou_loss: str | None = None,
                       with_loss: bool = True) -> Any:
    """Reload a `save_pretrained` folder written by a run (its best step) for evaluation, its
    loss the IoU variant it trained with (`use_iou_loss` recorded it), or `iou_loss` when given.

    A folder that records none (written before the record existed), with no `iou_loss` given,
    is refused naming the folder; `with_loss=False` (prediction computes no loss) takes it as
    it is, with no loss installed.
    """
    from transformers import AutoModelForObjectDetection

    model = AutoModelForObjectDetection.from_pretrained(str(model_dir))
    if not with_loss:
        return model
    iou_loss = iou_loss or getattr(model.config, "iou_loss", None)
    if iou_loss is None:
        raise UserInputError("records no iou_loss in its config.json (written before runs "
                             "recorded it): give the run config it was trained with (--config)",
                             source=model_dir)
    use_iou_loss(model, iou_loss)
    return model
