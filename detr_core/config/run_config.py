"""One training run as a typed, validated config: the pydantic schema, YAML in and out, the
dotted keys a search may set, and every path made absolute on reading (Tune trials run in their
own working directory). A bad key or value is refused in one line naming the file and the key.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from detr_core.config.metric_names import is_ema_metric
from detr_core.files.builtin_models import builtin_problem, is_builtin
from detr_core.files.errors import UserInputError, describe_value
from detr_core.files.file_io import dump_yaml, load_yaml_mapping

ModelT = TypeVar("ModelT", bound=BaseModel)

#: Dotted run-config keys whose string values are file-system paths (made absolute on load).
PATH_KEYS = (
    *(f"data.{split}.{part}" for split in ("train", "val", "test")
      for part in ("annotations", "images")),
    "data.synthetic.cache_dir",
    "model.checkpoint",
)


def resolve_path_value(key: str, value: Any, base: Path) -> Any:
    """`value` of path key `key` made absolute against `base`; a checkpoint only when it is
    `./x`, `/x`, `~/x` or a folder under `base` (else a Hub name)."""
    if key not in PATH_KEYS or not isinstance(value, str):
        return value
    if key == "model.checkpoint" and not (value.startswith((".", "/", "~"))
                                          or (base / value).exists()):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def resolve_paths(cfg: RunConfig, base: Path) -> RunConfig:
    """A copy whose paths (data, and a checkpoint that is a local folder) are absolute."""
    raw = cfg.model_dump()
    for key in PATH_KEYS:
        if (value := get_dotted(raw, key)) is not None:
            set_dotted(raw, key, resolve_path_value(key, value, base))
    return RunConfig.model_validate(raw)


IouLoss = Literal["giou", "diou", "ciou"]
#: `model_type` of every family (a test keeps it equal to `detr_core.model.families.FAMILIES`).
FamilyName = Literal["detr", "conditional_detr", "deformable_detr", "rt_detr", "rt_detr_v2",
                     "d_fine"]
DEFAULT_CONFIG_PATH = Path(__file__).parents[1] / "defaults" / "run.yaml"
#: The longest edge allowed: an out-of-memory typo (100000 px tried to allocate 26 GB) is refused.
MAX_IMAGE_SIZE = 8192


class Section(BaseModel):
    """A run-config section: unknown keys refused, types strict (no `"3"` for 3)."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # pickled as a plain dataclass before the schema (Tune's tuner.pkl holds a spec)
        if "__dict__" not in state:
            state = {"__dict__": state, "__pydantic_fields_set__": set(state),
                     "__pydantic_extra__": None, "__pydantic_private__": None}
        super().__setstate__(state)


class SplitPaths(Section):
    """A COCO split on disk."""

    annotations: str
    """The COCO annotation JSON."""
    images: str
    """The folder its `file_name`s are relative to."""


class SyntheticConfig(Section):
    """An embedded synthetic dataset (`detr_core.data.synthetic`), generated once and cached."""

    task: Literal["shapes", "pretrain"] = "shapes"
    """`shapes` (the fine-tuning default) or `pretrain` (what shipped checkpoints saw)."""
    num_train: int = Field(1000, ge=1)
    num_val: int = Field(64, ge=1)
    num_test: int = Field(128, ge=0)
    image_size: int = Field(96, ge=32)
    """Pixels per side."""
    min_objects: int = Field(1, ge=1)
    max_objects: int = 3
    """At least `min_objects`."""
    seed: int = 0
    cache_dir: str | None = None


class DataConfig(Section):
    """Either `synthetic` or COCO `train` + `val` (+ optional `test`)."""

    synthetic: SyntheticConfig | None = None
    train: SplitPaths | None = None
    val: SplitPaths | None = None
    test: SplitPaths | None = None

    @property
    def has_test_split(self) -> bool:
        return self.test is not None if self.synthetic is None else self.synthetic.num_test > 0


class ModelConfig(Section):
    """Where the weights come from and the input resolution."""

    preset: Literal["tiny"] | None = None
    """A small model of `family` from random weights, offline."""
    family: FamilyName | None = None
    """The family of a preset (default `detr`); a checkpoint's is read from its config.json."""
    checkpoint: str | None = None
    """A Hub name, a `save_pretrained` folder or `builtin:<name>` (shipped with the package)."""
    image_size: int = Field(96, ge=32, le=MAX_IMAGE_SIZE)
    """The longest edge after resizing."""
    config_overrides: dict[str, Any] = {}
    """Fields of the family's config class (`DetrConfig`, `RTDetrConfig`, ...)."""


class AugmentationConfig(Section):
    """albumentations transforms by class name, per split; boxes use COCO bbox params."""

    train: list[Any] = Field(default_factory=lambda: [
        {"HorizontalFlip": {"p": 0.5}},
        {"ColorJitter": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02,
                         "p": 0.5}}])
    val: list[Any] = []
    min_area: float = Field(4.0, ge=0)
    """Boxes smaller than this (pixels) after a transform are dropped."""
    min_visibility: float = Field(0.0, ge=0, le=1)


class EvaluationConfig(Section):
    """Test-metric settings."""

    score_threshold: float = Field(0.5, ge=0, le=1)
    """Detections below it are not counted as found."""
    batch_size: int = Field(16, ge=1)
    test_during_training: bool = False
    """Also evaluate the test split at every evaluation (learning curves only)."""


class EmaConfig(Section):
    """Averaged weights (`detr_core.training.ema`), evaluated as `eval_ema_*`."""

    decay: float = Field(0.999, ge=0, lt=1)
    """At most about `1 / (1 - decay)` steps are averaged."""
    warmup_power: float = Field(0.75, gt=0)


class RunConfig(Section):
    """Everything one fine-tuning run needs; one YAML file is one of these."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    iou_loss: IouLoss = "giou"
    """The IoU term of the matcher cost and the box loss (`detr_core.model.losses`)."""
    freeze_backbone: bool = False
    backbone_lr_ratio: float | None = Field(None, gt=0, le=100)
    """The backbone's learning rate over the main one; unset: the checkpoint's recipe, else 1."""
    training_args: dict[str, Any] = {}
    """Any `transformers.TrainingArguments` field."""
    augmentation: AugmentationConfig = AugmentationConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    ema: EmaConfig | None = None
    seed: int = 42
    num_threads: int | None = Field(None, ge=1)
    """Torch threads; null = all cores."""


#: How a pydantic error type is said here (the others keep pydantic's own words).
_TYPE_WORDS = {"int_type": "an integer", "int_from_float": "an integer",
               "float_type": "a number", "bool_type": "true or false",
               "string_type": "a string", "dict_type": "a mapping", "model_type": "a mapping",
               "model_attributes_type": "a mapping", "list_type": "a list"}
_BOUND_WORDS = {"greater_than_equal": ("ge", ">="), "greater_than": ("gt", ">"),
                "less_than_equal": ("le", "<="), "less_than": ("lt", "<")}


@functools.cache
def strict_adapter(annotation: Any) -> TypeAdapter:
    """A strict pydantic validator of one annotation, built once."""
    return TypeAdapter(annotation, config=ConfigDict(strict=True, arbitrary_types_allowed=True))


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    for part in loc[:-1]:
        field_info = model.model_fields.get(str(part))
        inner = strip_optional(field_info.annotation) if field_info else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return []
        model = inner
    return sorted(model.model_fields)


def validated(model: type[ModelT], raw: Any, source: str | Path | None,
              key_prefix: str = "") -> ModelT:
    """`raw` validated as `model`, or a one-line `UserInputError` on the first problem."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = tuple(error["loc"])
        kind, value = error["type"], error.get("input")
        dotted = ".".join(str(p) for p in (key_prefix, *loc) if p != "")
        if kind == "extra_forbidden":
            problem = f"unknown key (known keys here: {', '.join(_known_keys(model, loc))})"
        elif kind == "missing":
            problem = "required key is missing"
        elif kind == "literal_error":
            problem = f"must be one of {error['ctx']['expected']}, got {describe_value(value)}"
        elif kind in _TYPE_WORDS:
            problem = f"expected {_TYPE_WORDS[kind]}, got {describe_value(value)}"
        elif kind in _BOUND_WORDS:
            name, sign = _BOUND_WORDS[kind]
            problem = f"must be {sign} {error['ctx'][name]:g}, got {value!r}"
        elif kind == "value_error" and isinstance(error["ctx"]["error"], UserInputError):
            raise error["ctx"]["error"].relocated(source, dotted) from None
        else:
            problem = error["msg"]
        raise UserInputError(problem, source=source, key=dotted or None) from None


def _fail(source: str, key: str, problem: str) -> typing.NoReturn:
    raise UserInputError(problem, source=source, key=key)


#: Pairs of run-config keys that exclude each other: setting a key of one side drops the other.
EXCLUSIVE_KEYS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("model.preset",), ("model.checkpoint",)),
    (("data.synthetic",), ("data.train", "data.val", "data.test")),
    (("training_args.warmup_steps",), ("training_args.warmup_ratio",)),
)


def strip_optional(tp: Any) -> Any:
    """`X | None` -> X (only for a single non-None member)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return tp


def key_type(dotted: str) -> Any:
    """The annotation of the run-config key `dotted`; `UserInputError` when it cannot be set."""
    from detr_core.config.training_args import training_arg_type

    parts = dotted.split(".")
    if any(not p for p in parts):
        raise UserInputError("empty part in dotted key", key=dotted)
    tp: Any = RunConfig
    for i, part in enumerate(parts):
        prefix, rest = ".".join(parts[:i]), parts[i + 1:]
        if prefix in ("training_args", "model.config_overrides"):
            if rest:
                raise UserInputError(f"`{prefix}.{part}` has no sub-keys to set", key=dotted)
            if prefix == "training_args":
                return training_arg_type(part)
            if part not in detr_config_fields():
                raise UserInputError("not a config field of any supported DETR-family model",
                                     key=dotted)
            return Any
        tp = strip_optional(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if part not in tp.model_fields:
                where = f"under `{prefix}`" if prefix else "at the top level"
                raise UserInputError(f"unknown run-config key (known {where}: "
                                     f"{', '.join(sorted(tp.model_fields))})", key=dotted)
            tp = tp.model_fields[part].annotation
            continue
        if tp is dict or typing.get_origin(tp) is dict:
            return Any
        raise UserInputError(f"`{prefix}` is not a mapping, it has no key `{part}`", key=dotted)
    return tp


@functools.lru_cache(maxsize=1)
def detr_config_fields() -> frozenset[str]:
    """Fields of any family's config class (the model builder checks the run's own family)."""
    from transformers import AutoConfig

    fields: set[str] = {"num_labels"}
    for model_type in typing.get_args(FamilyName):
        fields.update(f.name for f in dataclasses.fields(type(AutoConfig.for_model(model_type))))
    return frozenset(fields)


def is_section(dotted: str) -> bool:
    """`dotted` names a nested section or a free mapping (`training_args`...)."""
    try:
        tp = strip_optional(key_type(dotted))
    except UserInputError:
        return False
    return (isinstance(tp, type) and issubclass(tp, BaseModel)) or tp is dict \
        or typing.get_origin(tp) is dict


def touches(keys: Iterable[str], prefixes: Iterable[str]) -> bool:
    """A key in `keys` is one of `prefixes` or lies below one."""
    prefixes = tuple(prefixes)
    return any(k == p or k.startswith(p + ".") for k in keys for p in prefixes)


def run_config_from_dict(raw: dict[str, Any], source: str = "<config>") -> RunConfig:
    """A run-config mapping validated; `source` names it in errors."""
    if not isinstance(raw, dict):
        raise UserInputError("top level must be a mapping", source=source)
    cfg = validated(RunConfig, raw, source)
    data = cfg.data
    if data.synthetic is None and data.train is None:
        _fail(source, "data", "give either `synthetic:` or `train:` and `val:` COCO splits")
    if data.synthetic is not None and (data.train or data.val or data.test):
        _fail(source, "data",
              "`synthetic` and COCO paths (`train`/`val`/`test`) exclude each other")
    if data.train is not None and data.val is None:
        _fail(source, "data.val", "required when `data.train` is given")
    syn = data.synthetic
    if syn is not None and syn.max_objects < syn.min_objects:
        _fail(source, "data.synthetic.max_objects", "must be >= data.synthetic.min_objects")
    model = cfg.model
    if (model.preset is None) == (model.checkpoint is None):
        _fail(source, "model", "give exactly one of `preset: tiny` or `checkpoint: NAME_OR_DIR`")
    if model.family is not None and model.preset is None:
        _fail(source, "model.family", "only with `preset: tiny` (a checkpoint's family is read "
              "from its config.json)")
    if is_builtin(model.checkpoint):
        problem = builtin_problem(str(model.checkpoint))
        if problem:
            _fail(source, "model.checkpoint", problem)
    best_by = cfg.training_args.get("metric_for_best_model")
    if cfg.ema is None and isinstance(best_by, str) and is_ema_metric(best_by):
        _fail(source, "training_args.metric_for_best_model",
              f"{best_by} is a metric of averaged weights: add `ema: {{}}` to the run config")
    from detr_core.config.training_args import check_training_args  # heavy import

    check_training_args(cfg.training_args, source)
    return cfg


def load_run_config(path: str | Path) -> RunConfig:
    """One run YAML, validated; relative paths resolved against its folder."""
    path = Path(path)
    cfg = run_config_from_dict(load_yaml_mapping(path), source=str(path))
    return resolve_paths(cfg, path.resolve().parent)


def load_default_run_config() -> RunConfig:
    """The embedded default: synthetic shapes + tiny preset, runs offline on a CPU."""
    return load_run_config(DEFAULT_CONFIG_PATH)


def run_config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain nested dict of `cfg` (fields with None dropped where they mean 'not given')."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None or k == "num_threads"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(cfg.model_dump())


def save_run_config(cfg: RunConfig, path: str | Path, header: str = "") -> None:
    """Write `cfg` as YAML that `load_run_config` reads back to an equal config."""
    dump_yaml(run_config_to_dict(cfg), path, header=header)


def get_dotted(raw: Any, dotted_key: str, default: Any = None) -> Any:
    """`a.b.c` of a nested dict; `default` when any part is absent."""
    node = raw
    for part in dotted_key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def pop_dotted(raw: dict[str, Any], dotted_key: str) -> None:
    """Remove `a.b.c` from a nested dict when it is there."""
    parent, _, leaf = dotted_key.rpartition(".")
    node = get_dotted(raw, parent) if parent else raw
    if isinstance(node, dict):
        node.pop(leaf, None)


def set_dotted(raw: dict[str, Any], dotted_key: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, creating intermediate mappings."""
    *parents, leaf = dotted_key.split(".")
    node = raw
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep copy of `raw` with each dotted key of `overrides` set."""
    merged = copy.deepcopy(raw)
    for key, value in overrides.items():
        set_dotted(merged, key, value)
    return merged
