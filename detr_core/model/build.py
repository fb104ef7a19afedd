"""Build the detector and image processor of a run, for any supported DETR-family member:
from a checkpoint with the dataset's label set (label- and query-shaped parameters reset when
they differ), or from a family's random `tiny` preset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
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

# "Loading weights" / "Writing model shards" bars for a 2 MB model are noise on every console
hf_logging.disable_progress_bar()

PREPROCESSOR_FILE = "preprocessor_config.json"
#: The largest square `check_model_runs` tries: more encoder positions than any `num_queries`.
CHECK_SIZE_CAP = 640


def backbone_parameters(model: Any) -> list[torch.nn.Parameter]:
    """Exactly the parameters `freeze_backbone` and the backbone learning rate act on."""
    return list(model.model.backbone.parameters())


def freeze_batch_norms(module: torch.nn.Module) -> None:
    """Replace every `BatchNorm2d` below `module` by a `FrozenBatchNorm2d`."""
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.load_state_dict(child.state_dict())  # drops `num_batches_tracked`
            setattr(module, name, frozen.to(child.weight.device))
        else:
            freeze_batch_norms(child)


def model_family(model_cfg: ModelConfig) -> Family:
    """The preset's `family` (DETR unless given), else the one the checkpoint's config names."""
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
    # a fixed height x width (RT-DETR, D-FINE) stays a square; a shortest / longest edge rule
    # (DETR, Conditional and Deformable DETR) keeps the aspect ratio, padded to a square
    size, current = model_cfg.image_size, processor.size  # a SizeDict, or a dict (older)
    fixed = (current.get("height"), current.get("width")) if isinstance(current, dict) else (
        getattr(current, "height", None), getattr(current, "width", None))
    if None not in fixed:
        processor.size = {"height": size, "width": size}
    else:
        processor.size = {"shortest_edge": size, "longest_edge": size}
        processor.pad_size = {"height": size, "width": size}
        processor.do_pad = True
    return processor


def load_image_processor(folder: str | Path) -> Any:
    """The image processor a model folder was saved with (its own class, from its JSON)."""
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(str(folder))


def num_queries_of(model_cfg: ModelConfig) -> int | None:
    """The model's `num_queries` without building it (None: the checkpoint is not here)."""
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
    from transformers import AutoConfig, AutoModelForObjectDetection

    labels = {"num_labels": len(label_map.names), "id2label": label_map.id2label,
              "label2id": label_map.label2id}
    overrides = dict(model_cfg.config_overrides)
    fam = model_family(model_cfg)
    # config classes accept unknown keys silently; a typo in the run YAML must not pass
    config_class = type(AutoConfig.for_model(fam.model_type))
    fields = {f.name for f in dataclasses.fields(config_class)} | {"num_labels"}
    for key in overrides:
        if key not in fields:
            raise UserInputError(f"not a {config_class.__name__} field ({fam.title})",
                                 key=f"model.config_overrides.{key}")
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
    # set explicitly: transformers freezes an HF ResNet's early stages for DETR-style families
    for parameter in model.model.backbone.parameters():
        parameter.requires_grad_(not freeze_backbone)
    if freeze_backbone:
        freeze_batch_norms(model.model.backbone)
    return model


def use_iou_loss(model: Any, iou_loss: str) -> None:
    """Install the `iou_loss` variant's loss and record it in `config.json` (`"iou_loss"`)."""
    model.config.iou_loss = iou_loss
    model.loss_function = iou_loss_function(family_of_model(model).model_type, iou_loss)


def init_queries(model: Any) -> None:
    """DETR's queries N(0, 1) as in the original DETR: they specialise instead of collapsing."""
    if model.config.model_type == "detr":
        torch.nn.init.normal_(model.model.query_position_embeddings.weight)


def check_model_runs(model: Any, size: int = 64) -> None:
    """Refuse overrides that build but cannot run (`d_model: 65`): one forward pass, eval mode."""
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


def _from_checkpoint(checkpoint: str, labels: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """`from_pretrained` with the run's label set, label- and query-shaped parameters reset."""
    from transformers import AutoConfig, AutoModelForObjectDetection

    source = resolve_checkpoint(checkpoint)
    try:
        previous_config = AutoConfig.from_pretrained(source)
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
    previous = previous_config.id2label
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
    # one warning line per kind of weight not loaded, apart from those reset on purpose
    expected = label_shaped | query_shaped
    mismatched = sorted(k[0] if isinstance(k, tuple) else str(k)
                        for k in info.get("mismatched_keys", []))
    for what, keys in (("not in the checkpoint, newly initialised",
                        sorted(k for k in info.get("missing_keys", []) if k not in expected)),
                       ("of another shape in the checkpoint, newly initialised",
                        [k for k in mismatched if k not in expected]),
                       ("in the checkpoint but not used by this model",
                        sorted(info.get("unexpected_keys", [])))):
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            print(f"warning: model.checkpoint {checkpoint}: {len(keys)} weights {what}: "
                  f"{shown}", file=sys.stderr)
    return model


@contextlib.contextmanager
def _quiet_load_report() -> Iterator[None]:
    """Silence transformers 5's many-line LOAD REPORT (what matters is said in one line)."""
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def label_shaped_parameters(model: Any) -> set[str]:
    """Every tensor shaped by the number of labels."""
    return parameters_shaped_by(model, "num_labels")


def parameters_shaped_by(model: Any, field: str) -> set[str]:
    """State-dict names of every tensor whose shape depends on the config's integer `field`:
    the architecture built twice on the `meta` device (no memory, no random numbers)."""
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
    """Re-initialise the tensors `names` as a new model of the same config does (in a checkpoint
    with as many classes as the dataset but other ones, `ignore_mismatched_sizes` misses them),
    on a forked random stream, so the run's later random numbers do not depend on it."""
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
    """Reload a run's model folder with the IoU loss it recorded (or `iou_loss`, or none)."""
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
