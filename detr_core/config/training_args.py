"""`training_args:` from YAML -> `transformers.TrainingArguments`: any field but the few detr_core
owns, `warmup_ratio` converted to a float `warmup_steps` below 1 (transformers 5 dropped it),
and values `TrainingArguments` accepts but a run cannot train with refused (`ValueRanges`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from detr_core.config.metric_names import (
    DEFAULT_METRIC,
    SELECTABLE_EVAL_METRICS,
    eval_name,
    natural_mode,
)
from detr_core.config.run_config import strict_adapter, validated
from detr_core.files.errors import UserInputError

#: detr_core's defaults: DETR's fine-tuning recipe (facebookresearch/detr: AdamW 1e-4, weight
#: decay 1e-4, clipping at 0.1); `warmup_steps` a float (< 1 is a ratio); no dataloader worker
#: (one oversubscribes 2 cores: 3x slower steps).
DEFAULT_TRAINING_ARGS: dict[str, Any] = {
    "learning_rate": 1e-4, "num_train_epochs": 10, "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 16, "warmup_steps": 0.0, "weight_decay": 1e-4,
    "max_grad_norm": 0.1, "logging_steps": 100, "metric_for_best_model": DEFAULT_METRIC,
    "greater_is_better": False, "lr_scheduler_type": "linear", "dataloader_num_workers": 0,
    "disable_tqdm": True,
}

#: Fields detr_core sets itself, with the reason shown to a user who sets one.
OWNED_FIELDS: dict[str, str] = {
    "output_dir": "use --output-dir",
    "eval_strategy": "evaluation runs at every logging step",
    "eval_steps": "evaluation runs at every logging step (set logging_steps)",
    "save_strategy": "the best step by metric_for_best_model is kept",
    "save_steps": "the best step by metric_for_best_model is kept",
    "save_total_limit": "the best step by metric_for_best_model is kept",
    "remove_unused_columns": "DETR needs its `labels` column",
    "eval_do_concat_batches": "per-batch DETR outputs cannot be concatenated",
    "seed": "use the top-level `seed:` key",
}


class ValueRanges(BaseModel):
    """Ranges of the numeric fields a run depends on (types: `TrainingArguments`')."""

    model_config = ConfigDict(extra="allow")

    learning_rate: float | None = Field(None, gt=0)
    per_device_train_batch_size: int | None = Field(None, ge=1)
    per_device_eval_batch_size: int | None = Field(None, ge=1)
    gradient_accumulation_steps: int | None = Field(None, ge=1)
    eval_accumulation_steps: int | None = Field(None, ge=1)
    warmup_steps: float | None = Field(None, ge=0)
    weight_decay: float | None = Field(None, ge=0)
    max_grad_norm: float | None = Field(None, ge=0)
    logging_steps: float | None = Field(None, gt=0)
    """A number of steps, or below 1 a ratio of the run."""
    adam_beta1: float | None = Field(None, ge=0, lt=1)
    adam_beta2: float | None = Field(None, ge=0, lt=1)
    adam_epsilon: float | None = Field(None, ge=0)
    label_smoothing_factor: float | None = Field(None, ge=0, lt=1)
    dataloader_num_workers: int | None = Field(None, ge=0)
    dataloader_prefetch_factor: int | None = Field(None, ge=1)
    eval_delay: float | None = Field(None, ge=0)
    warmup_ratio: float | None = Field(None, ge=0, lt=1)


def check_training_budget(args: dict[str, Any], source: str) -> None:
    """`max_steps` is -1 (train `num_train_epochs`) or >= 1; epochs must then be > 0."""
    max_steps = args.get("max_steps", training_arg_default("max_steps"))
    epochs = args.get("num_train_epochs", training_arg_default("num_train_epochs"))
    if isinstance(max_steps, int) and not isinstance(max_steps, bool) \
            and max_steps != -1 and max_steps < 1:
        raise UserInputError(f"must be >= 1, or -1 to train num_train_epochs; got {max_steps}",
                             source=source, key="training_args.max_steps")
    trains_epochs = not (isinstance(max_steps, int) and max_steps >= 1)
    if trains_epochs and isinstance(epochs, int | float) and not isinstance(epochs, bool) \
            and not epochs > 0:
        raise UserInputError(f"must be > 0 (or set max_steps >= 1), got {epochs!r}",
                             source=source, key="training_args.num_train_epochs")


@functools.lru_cache(maxsize=1)
def training_args_fields() -> dict[str, Any]:
    """`TrainingArguments`' init fields by name (the keys `training_args:` accepts)."""
    from transformers import TrainingArguments

    return {f.name: f for f in dataclasses.fields(TrainingArguments) if f.init}


@functools.cache
def training_args_types() -> dict[str, Any]:
    from transformers import TrainingArguments

    return typing.get_type_hints(TrainingArguments)


def training_arg_type(key: str) -> Any:
    """The annotation of `training_args.<key>`; `UserInputError` for a key that cannot be set."""
    dotted = f"training_args.{key}"
    if key in OWNED_FIELDS:
        raise UserInputError(f"set by detr_core ({OWNED_FIELDS[key]})", key=dotted)
    if key == "warmup_ratio":
        return float
    if key == "load_best_model_at_end":
        return bool
    if key not in training_args_fields():
        raise UserInputError("not a transformers.TrainingArguments field", key=dotted)
    return training_args_types()[key]


def training_arg_default(key: str) -> Any:
    """The value a run uses when its YAML does not set `key`: detr_core's, else transformers'."""
    if key in DEFAULT_TRAINING_ARGS:
        return DEFAULT_TRAINING_ARGS[key]
    return training_args_fields()[key].default


def normalise_training_args(user_args: dict[str, Any], source: str) -> dict[str, Any]:
    """The user's values checked, `warmup_ratio` converted."""
    args = dict(user_args)
    for key, value in args.items():
        dotted = f"training_args.{key}"
        try:
            annotation = training_arg_type(key)
        except UserInputError as exc:
            raise exc.relocated(source) from None
        if key == "load_best_model_at_end":
            continue
        try:
            if annotation is not Any:
                strict_adapter(annotation).validate_python(value)
        except ValidationError:
            raise UserInputError(
                f"expected {getattr(annotation, '__name__', annotation)}, "
                f"got {type(value).__name__} {value!r}", source=source, key=dotted) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise UserInputError(f"must be a finite number, got {value!r}", source=source,
                                 key=dotted)
        validated(ValueRanges, {key: value}, source, key_prefix="training_args")
    check_training_budget(args, source)
    ratio = args.pop("warmup_ratio", None)
    if ratio is not None:
        if "warmup_steps" in args:
            raise UserInputError("give warmup_steps or warmup_ratio, not both", source=source,
                                 key="training_args")
        args["warmup_steps"] = float(ratio)  # its type and range were checked above
    metric = args.get("metric_for_best_model")
    if isinstance(metric, str) and eval_name(metric) not in SELECTABLE_EVAL_METRICS:
        # else the Trainer fails with a KeyError at the first evaluation, mid-run
        raise UserInputError(
            f"unknown metric {metric!r}; one of: "
            f"{', '.join(m for m in SELECTABLE_EVAL_METRICS if 'ema_' not in m)} "
            "(and their eval_ema_* twins with averaged weights, `ema:`)",
            source=source, key="training_args.metric_for_best_model")
    check_report_to(args.get("report_to"), source)
    args.pop("load_best_model_at_end", None)  # the best step is always kept and reloaded
    return args


#: `report_to` values that need nothing installed (TensorBoard is always written).
BUILTIN_REPORTS = ("tensorboard", "none", "all")


def check_report_to(value: Any, source: str) -> None:
    """Each `report_to` integration must be known and installed (else the Trainer raises late)."""
    wanted = [value] if isinstance(value, str) else value
    if not isinstance(wanted, list) or any(not isinstance(w, str) for w in wanted):
        return  # a type problem: reported by the type check
    others = [w for w in wanted if w not in BUILTIN_REPORTS]
    if not others:
        return
    from transformers.integrations import integration_utils

    known = integration_utils.INTEGRATION_TO_CALLBACK
    installed = set(integration_utils.get_available_reporting_integrations())
    for name in others:
        if name not in known:
            raise UserInputError(
                f"unknown integration {name!r}; one of: {', '.join(sorted(known))}, none",
                source=source, key="training_args.report_to")
        if name not in installed:
            raise UserInputError(
                f"{name!r} is not installed here (pip install {name.replace('_', '-')}), or "
                "leave it out: TensorBoard files are always written",
                source=source, key="training_args.report_to")


def check_training_args(user_args: dict[str, Any], source: str) -> None:
    build_training_args(user_args, output_dir=Path("/nonexistent-detr-core-check"), seed=0,
                        source=source)


def build_training_args(
    user_args: dict[str, Any], output_dir: Path, seed: int, source: str = "<config>"
) -> Any:
    """The `TrainingArguments` of one run: defaults, then the user's values, then owned fields."""
    import torch
    from transformers import TrainingArguments

    user = normalise_training_args(user_args, source)
    merged = {**DEFAULT_TRAINING_ARGS, **user}
    if "metric_for_best_model" in user and "greater_is_better" not in user:
        # transformers' guess ("greater unless it ends in loss") is wrong for eval_loss_bbox
        merged["greater_is_better"] = natural_mode(str(user["metric_for_best_model"])) == "max"
    merged.setdefault("dataloader_pin_memory", torch.cuda.is_available())
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed and torch.distributed.get_world_size() > 1 and not torch.cuda.is_available():
        # a rank of a CPU job: without it accelerate ignores the process group (each rank
        # trains alone, with one warning)
        merged["use_cpu"] = True
    report_to = merged.pop("report_to", "none")
    if isinstance(report_to, str):
        report_to = [report_to]
    report_to = [r for r in report_to if r not in BUILTIN_REPORTS] or "none"
    merged.update(output_dir=str(output_dir), eval_strategy="steps",
                  eval_steps=merged["logging_steps"], save_strategy="best", save_total_limit=1,
                  load_best_model_at_end=False, remove_unused_columns=False,
                  eval_do_concat_batches=False, report_to=report_to, seed=seed)
    try:
        return TrainingArguments(**merged)
    except (TypeError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserInputError(first_line, source=source, key="training_args") from None
