"""Search-space files: YAML -> validated `SearchSpec` -> flat Ray Tune param space.

A search-space file says what to search, over which base run, and how:

```yaml
experiment:                      # every key optional
  name: iou                      # default: the file's stem; results go to <storage>/<name>
  metric: eval_loss_bbox         # one of REPORTED_METRICS (default eval_loss_bbox)
  mode: min                      # min | max (default: the metric's own, max for mAP/recall)
  num_samples: 8                 # trials (default 8)
  max_concurrent: 2              # trials at a time (ConcurrencyLimiter); default: as many as fit
  scheduler:                     # ASHA; every budget is in optimizer steps (time_attr = step)
    grace_period: 300            # first rung; default: the base's logging_steps (first eval)
    reduction_factor: 3          # keep the best 1/3 at each rung (default 3)
    max_t: 1500                  # cap per trial; default: the longest trial's steps, estimated
                                 # from the base (required when it trains on COCO files)
  searcher:                      # Optuna TPE
    seed: 0                      # default 0; null = a different search each time
    n_startup_trials: 4          # random trials before TPE; default min(10, ceil(num_samples/2))
  resources: {cpus_per_trial: 1, gpus_per_trial: 0}   # gpus may be fractional: 0.5 = 2 per GPU
  max_failures: 0                # retries of an errored trial from its last checkpoint (-1: no cap)
base: ../configs/run.yaml        # detr_core run config: a path (relative to THIS file) or an
                                 # inline mapping; default: the embedded default run
base_overrides:                  # optional, applied over `base`; dotted or nested keys
  training_args.num_train_epochs: 4
space:                           # dotted keys of the run config
  iou_loss: {choice: [giou, diou, ciou]}
  training_args.learning_rate: {loguniform: [1.0e-5, 1.0e-3]}
  training_args.warmup_steps: {uniform: [0.0, 0.2]}       # < 1 is a ratio, >= 1 steps
  training_args.num_train_epochs: {randint: [2, 6]}       # 2, 3, 4, 5 or 6
  training_args.per_device_train_batch_size: {qrandint: [4, 16, 4]}   # 4, 8, 12 or 16
  training_args.weight_decay: {quniform: [0.0, 0.1, 0.01]}
  freeze_backbone: {choice: [true, false]}
  seed: 3                        # a plain value is fixed for every trial
```

Distributions (every upper bound is INCLUSIVE, integers included):

| name        | arguments         | draws                                                     |
|-------------|-------------------|-----------------------------------------------------------|
| choice      | [v1, v2, ...]     | one of the values                                         |
| uniform     | [low, high]       | a float in [low, high]                                    |
| quniform    | [low, high, q]    | a multiple of q in [low, high]                            |
| loguniform  | [low, high]       | a float, uniform in log scale (low > 0)                   |
| qloguniform | [low, high, q]    | loguniform rounded to a multiple of q                     |
| randint     | [low, high]       | an integer in [low, high]                                 |
| qrandint    | [low, high, q]    | a multiple of q in [low, high]                            |
| lograndint  | [low, high]       | an integer, uniform in log scale (low >= 1)               |

Bounds of the q-distributions must be multiples of q. Searchable keys: every field of the
detr_core run config (`iou_loss`, `freeze_backbone`, `seed`, `model.*`, `data.*`,
`augmentation.*`, `evaluation.*`, `model.config_overrides.<DetrConfig field>`) and any
`transformers.TrainingArguments` field as `training_args.<field>` (plus `warmup_ratio`).

Keys that exclude each other (`model.preset` / `model.checkpoint`, `data.synthetic` /
`data.train|val|test`, `training_args.warmup_steps` / `warmup_ratio`): setting one in
`base_overrides` or `space` drops the other from the base. Relative paths in `base_overrides`
and in fixed or choice values of path keys are resolved against the space file's folder.

Everything is checked before Ray starts: unknown keys, bad bounds, wrong value types. The run
config is built and validated with every choice value and both ends of every range, so a value
the run cannot take (`iou_loss: {choice: [giou, xiou]}`) fails here, as one line naming the
file and the key, not in a trial.

Tune side: the param space is FLAT, keyed by the dotted names (`training_args.learning_rate`).
Ray nests keys on "/" only, so dots survive `OptunaSearch` unchanged into each trial's
`config` and `params.json` (checked against Ray 2.60); `run_config_for_trial` turns a trial's
config back into a run config. Optuna cannot quantize a log-scale float, so `qloguniform`
values are rounded to q in `run_config_for_trial` (pass `space=`).
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from detr_core.config import (
    DEFAULT_CONFIG_PATH,
    RunConfig,
    apply_overrides,
    load_run_config,
    resolve_paths,
    run_config_from_dict,
    run_config_to_dict,
)
from detr_core.errors import UserInputError
from detr_core.metric_names import DEFAULT_METRIC, SELECTABLE_EVAL_METRICS, natural_mode
from detr_core.yaml_io import load_yaml_mapping

#: Metrics the trainable reports at every evaluation; `experiment.metric` must be one of them.
REPORTED_METRICS = SELECTABLE_EVAL_METRICS

FLOAT_DISTRIBUTIONS = ("uniform", "quniform", "loguniform", "qloguniform")
INT_DISTRIBUTIONS = ("randint", "qrandint", "lograndint")
DISTRIBUTIONS = ("choice", *FLOAT_DISTRIBUTIONS, *INT_DISTRIBUTIONS)
LOG_DISTRIBUTIONS = ("loguniform", "qloguniform", "lograndint")
QUANTIZED_DISTRIBUTIONS = ("quniform", "qloguniform", "qrandint")

TOP_LEVEL_KEYS = ("experiment", "base", "base_overrides", "space")
EXPERIMENT_KEYS = (
    "name", "metric", "mode", "num_samples", "max_concurrent", "scheduler", "searcher",
    "resources", "max_failures",
)
SCHEDULER_KEYS = ("grace_period", "reduction_factor", "max_t")
SEARCHER_KEYS = ("seed", "n_startup_trials")
RESOURCE_KEYS = ("cpus_per_trial", "gpus_per_trial")

#: `load_search_spec(overrides=...)` key -> (path in `experiment:`, CLI flag shown in errors).
OVERRIDE_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "name": (("name",), "--name"),
    "num_samples": (("num_samples",), "--num-samples"),
    "max_concurrent": (("max_concurrent",), "--max-concurrent"),
    "cpus_per_trial": (("resources", "cpus_per_trial"), "--cpus-per-trial"),
    "gpus_per_trial": (("resources", "gpus_per_trial"), "--gpus-per-trial"),
    "seed": (("searcher", "seed"), "--seed"),
    "max_failures": (("max_failures",), "--max-failures"),
}

DEFAULT_NUM_SAMPLES = 8
DEFAULT_REDUCTION_FACTOR = 3.0

# Pairs of run-config keys that exclude each other: setting a key under one side (in
# base_overrides or space) removes the other side from the base.
_EXCLUSIVE: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("model.preset",), ("model.checkpoint",)),
    (("data.synthetic",), ("data.train", "data.val", "data.test")),
    (("training_args.warmup_steps",), ("training_args.warmup_ratio",)),
)

# Run-config keys whose string values are file-system paths (resolved like detr_core does).
_PATH_KEYS = tuple(
    [f"data.{split}.{part}" for split in ("train", "val", "test")
     for part in ("annotations", "images")]
    + ["data.synthetic.cache_dir", "model.checkpoint"]
)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ---------------------------------------------------------------------------------------------
# the spec


@dataclass
class SchedulerSpec:
    """ASHA settings; every budget is in optimizer steps (`time_attr="step"`)."""

    grace_period: int
    reduction_factor: float
    max_t: int

    def rungs(self) -> list[float]:
        """Rung budgets `grace_period * reduction_factor**k` up to `max_t` (as in Ray's ASHA)."""
        return asha_rungs(self.grace_period, self.reduction_factor, self.max_t)


@dataclass
class SearcherSpec:
    """Optuna TPE settings: sampler seed (None: random) and random trials before TPE."""

    seed: int | None
    n_startup_trials: int


@dataclass
class ResourceSpec:
    """What one trial reserves; a fraction of a GPU packs several trials on one card."""

    cpus_per_trial: float
    gpus_per_trial: float


@dataclass
class SearchSpec:
    """A validated search-space file: what the driver needs to build the Tuner."""

    name: str
    metric: str
    mode: str
    num_samples: int
    max_concurrent: int | None
    scheduler: SchedulerSpec
    searcher: SearcherSpec
    resources: ResourceSpec
    max_failures: int
    base: dict
    space: dict
    source: Path
    base_source: str = "embedded default"

    def searched_keys(self) -> list[str]:
        """Keys drawn from a distribution, in file order."""
        return searched_keys_of(self.space)

    def fixed_values(self) -> dict:
        """Keys given a plain value: the same for every trial."""
        return {k: v for k, v in self.space.items() if not is_distribution(v)}

    def log_scale_keys(self) -> set[str]:
        """Keys searched on a log scale (plots use a log axis for them)."""
        return log_scale_keys_of(self.space)

    def to_yaml_dict(self) -> dict:
        """Plain dict written as `<experiment>/search_spec.yaml` (read back by export)."""
        return {
            "name": self.name,
            "source": str(self.source),
            "experiment": {
                "metric": self.metric,
                "mode": self.mode,
                "num_samples": self.num_samples,
                "max_concurrent": self.max_concurrent,
                "max_t": self.scheduler.max_t,
                "grace_period": self.scheduler.grace_period,
                "reduction_factor": self.scheduler.reduction_factor,
                "searcher_seed": self.searcher.seed,
                "n_startup_trials": self.searcher.n_startup_trials,
                "cpus_per_trial": self.resources.cpus_per_trial,
                "gpus_per_trial": self.resources.gpus_per_trial,
                "max_failures": self.max_failures,
            },
            "base": copy.deepcopy(self.base),
            "space": copy.deepcopy(self.space),
        }


def is_distribution(value: Any) -> bool:
    """True for a `{dist_name: args}` mapping (one key, a known distribution name)."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS


def searched_keys_of(space: dict) -> list[str]:
    """Searched keys of a space mapping as written (also works on `search_spec.yaml`)."""
    return [k for k, v in space.items() if is_distribution(v)]


def log_scale_keys_of(space: dict) -> set[str]:
    """Keys of a space mapping drawn on a log scale."""
    return {k for k in searched_keys_of(space) if next(iter(space[k])) in LOG_DISTRIBUTIONS}


def asha_rungs(grace_period: float, reduction_factor: float, max_t: float) -> list[float]:
    """Milestones of Ray's ASHA bracket 0: `grace * rf**k` for k while it stays <= max_t."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor**k for k in range(count)]


def default_max_concurrent(spec: SearchSpec, cluster_cpus: float, cluster_gpus: float) -> int:
    """Trials that fit the cluster at once (what `max_concurrent: null` means), at least 1."""
    fits = math.floor(cluster_cpus / spec.resources.cpus_per_trial + 1e-9)
    if spec.resources.gpus_per_trial > 0:
        fits = min(fits, math.floor(cluster_gpus / spec.resources.gpus_per_trial + 1e-9))
    return max(1, min(fits, spec.num_samples))


# ---------------------------------------------------------------------------------------------
# loading


def load_search_spec(path: str | Path, overrides: dict | None = None) -> SearchSpec:
    """Read, validate and resolve a search-space file; `overrides` come from the CLI.

    `overrides` keys: name, num_samples, max_concurrent, cpus_per_trial, gpus_per_trial, seed
    (the searcher's), max_failures; a None value means "not given". Raises `UserInputError`
    (one line: `<file>: <key>: <problem>`) for anything wrong; starts nothing.
    """
    path = Path(path)
    src = str(path)
    raw = load_yaml_mapping(path)
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            _fail(src, str(key), f"unknown top-level key (known: {', '.join(TOP_LEVEL_KEYS)})")
    folder = path.resolve().parent
    space = _parse_space(raw.get("space"), src, folder)
    base, base_source = _load_base(raw.get("base"), raw.get("base_overrides"), src, folder)
    base = _drop_excluded(base, space.keys())
    _validate_space_values(base, space, src)
    experiment = _experiment_with_overrides(raw.get("experiment"), overrides, src)
    return _build_spec(experiment, base, space, path, base_source)


def _fail(src: str, key: str, problem: str) -> typing.NoReturn:
    raise UserInputError(f"{src}: {key}: {problem}")


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:37] + '...' if len(text) > 40 else text}"


def _as_mapping(value: Any, src: str, key: str) -> dict:
    """`value` as a dict; None (an empty YAML section) counts as {}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(src, key, f"expected a mapping, got {_describe(value)}")
    return value


# ---------------------------------------------------------------------------------------------
# base run config


def _load_base(
    base: Any, overrides: Any, src: str, folder: Path
) -> tuple[dict[str, Any], str]:
    """The complete base run config as a dict: loaded, overridden, validated, paths absolute."""
    if base is None:
        raw = run_config_to_dict(load_run_config(DEFAULT_CONFIG_PATH))
        base_source = "embedded default"
    elif isinstance(base, str):
        base_path = Path(base).expanduser()
        base_path = (base_path if base_path.is_absolute() else folder / base_path).resolve()
        if not base_path.is_file():
            _fail(src, "base", f"file not found: {base_path}")
        raw = run_config_to_dict(load_run_config(base_path))  # its own errors name its file
        base_source = str(base_path)
    elif isinstance(base, dict):
        raw = copy.deepcopy(base)
        _run_config(raw, src, "base")
        base_source = "inline"
    else:
        _fail(src, "base", f"expected a path or a mapping, got {_describe(base)}")
    overrides = _as_mapping(overrides, src, "base_overrides")
    if overrides:
        flat = _flatten_overrides(overrides, src)
        raw = _drop_excluded(raw, flat.keys())
        raw = apply_overrides(raw, flat)
        _run_config(raw, src, "base_overrides")
    # A base file's paths are absolute already; inline and override paths are relative to
    # the space file.
    cfg = resolve_paths(run_config_from_dict(raw, src), folder)
    return run_config_to_dict(cfg), base_source


def _flatten_overrides(overrides: dict, src: str, prefix: str = "") -> dict[str, Any]:
    """Nested and dotted override keys -> {dotted leaf key: value}.

    Mappings are merged key by key where the run config has a section (a dataclass, or a free
    mapping such as `training_args` and `model.config_overrides`); anything else is replaced.
    """
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if not isinstance(key, str) or not key:
            _fail(src, f"base_overrides.{prefix}{key}", "keys must be non-empty strings")
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and _is_section(dotted):
            flat.update(_flatten_overrides(value, src, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _is_section(dotted: str) -> bool:
    """True when `dotted` names a nested dataclass or a free mapping (training_args...)."""
    try:
        tp = _annotation_of(dotted)
    except _UnknownKey:
        return False
    tp = _strip_optional(tp)
    return dataclasses.is_dataclass(tp) or tp is dict or typing.get_origin(tp) is dict


def _drop_excluded(raw: dict[str, Any], keys: typing.Iterable[str]) -> dict[str, Any]:
    """Remove from `raw` the counterparts of keys being set (model.preset vs checkpoint...)."""
    keys = list(keys)
    raw = copy.deepcopy(raw)

    def touches(prefixes: tuple[str, ...]) -> bool:
        return any(k == p or k.startswith(p + ".") for k in keys for p in prefixes)

    for side_a, side_b in _EXCLUSIVE:
        for mine, other in ((side_a, side_b), (side_b, side_a)):
            if touches(mine) and not touches(other):
                for dotted in other:
                    _pop_dotted(raw, dotted)
    return raw


def _pop_dotted(raw: dict[str, Any], dotted: str) -> None:
    node: Any = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(parts[-1], None)


_SENTINEL = "\x00cfg"


def _run_config(raw: dict[str, Any], src: str, where: str) -> RunConfig:
    """Validate a run-config dict; an error becomes `<src>: <where>.<inner key>: <problem>`."""
    try:
        return run_config_from_dict(raw, source=_SENTINEL)
    except UserInputError as exc:
        _fail(src, *_rekey(str(exc), where))


def _rekey(message: str, where: str) -> tuple[str, str]:
    """Split a detr_core message made with the sentinel source into (our key, problem)."""
    text = message.removeprefix(_SENTINEL + ": ")
    if text == message or ": " not in text:
        return where, text.replace(_SENTINEL, "run config")
    inner, problem = text.split(": ", 1)
    return f"{where}.{inner}" if where else inner, problem


# ---------------------------------------------------------------------------------------------
# which keys exist, and what they take


class _UnknownKey(Exception):
    """A dotted key that is not a run-config field; the message says why."""


def _strip_optional(tp: Any) -> Any:
    """`X | None` -> X (only for a single non-None member)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return tp


def _training_args_fields() -> dict[str, Any]:
    from detr_core.training_args import training_args_fields

    fields = {name: f.type for name, f in training_args_fields().items()}
    fields["warmup_ratio"] = float  # converted by detr_core into a float warmup_steps
    return fields


def _detr_config_fields() -> frozenset[str] | None:
    from detr_core.model import detr_config_fields

    return detr_config_fields()


def _annotation_of(dotted: str) -> Any:
    """Type annotation of the run-config field `dotted`; raises `_UnknownKey` if none."""
    from detr_core.training_args import COMPAT_FIELDS, OWNED_FIELDS

    parts = dotted.split(".")
    if any(not p for p in parts):
        raise _UnknownKey("empty part in dotted key")
    tp: Any = RunConfig
    for i, part in enumerate(parts):
        prefix = ".".join(parts[:i])
        rest = parts[i:]
        tp = _strip_optional(tp)
        if prefix == "training_args":
            if part in OWNED_FIELDS:
                raise _UnknownKey(f"set by detr_core ({OWNED_FIELDS[part]})")
            if part in COMPAT_FIELDS and part != "warmup_ratio":
                raise _UnknownKey("ignored by detr_core (the best step is always kept)")
            if part not in _training_args_fields():
                raise _UnknownKey("not a transformers.TrainingArguments field")
            if len(rest) > 1:
                raise _UnknownKey(f"training_args.{part} has no sub-keys to set")
            return _training_args_fields()[part]
        if prefix == "model.config_overrides":
            known = _detr_config_fields()
            if known is not None and part not in known:
                raise _UnknownKey("not a transformers.DetrConfig field")
            if len(rest) > 1:
                raise _UnknownKey(f"config_overrides.{part} has no sub-keys to set")
            return Any
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            if part not in hints:
                where = f"under `{prefix}`" if prefix else "at the top level"
                raise _UnknownKey(f"unknown run-config key (known {where}: "
                                  f"{', '.join(sorted(hints))})")
            tp = hints[part]
            continue
        if tp is dict or typing.get_origin(tp) is dict:
            return Any
        raise _UnknownKey(f"`{prefix}` is not a mapping, it has no key `{part}`")
    return tp


def _numeric_kinds(tp: Any) -> set[str] | None:
    """Which of {"int", "float"} a field accepts; None when its annotation does not say."""
    if tp is Any or isinstance(tp, str | typing.TypeVar):
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        kinds: set[str] = set()
        for member in typing.get_args(tp):
            sub = _numeric_kinds(member)
            if sub is None:
                return None
            kinds |= sub
        return kinds
    if origin is Literal:
        values = typing.get_args(tp)
        return {"int"} if any(isinstance(v, int) and not isinstance(v, bool)
                              for v in values) else set()
    if tp is bool:
        return set()
    if tp is int:
        return {"int"}
    if tp is float:
        return {"int", "float"}
    if tp in (str, type(None), list, dict) or origin in (list, dict):
        return set()
    if dataclasses.is_dataclass(tp) or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
        return set()
    return None


def _accepts_mapping(tp: Any) -> bool:
    """True when a field can hold a mapping (so `{key: value}` there is a value, not a typo)."""
    if tp is Any or isinstance(tp, str | typing.TypeVar) or tp is dict:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts_mapping(member) for member in typing.get_args(tp))
    return origin is dict or dataclasses.is_dataclass(tp)


def _type_words(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(v) for v in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# ---------------------------------------------------------------------------------------------
# the `space:` section


def _parse_space(space: Any, src: str, folder: Path) -> dict[str, Any]:
    """Check every key and distribution of `space:`; return it with path values absolute."""
    if space is None:
        _fail(src, "space", "missing: give at least one run-config key with a distribution")
    space = _as_mapping(space, src, "space")
    result: dict[str, Any] = {}
    for key, value in space.items():
        if not isinstance(key, str):
            _fail(src, f"space.{key}", "keys must be strings (dotted run-config keys)")
        where = f"space.{key}"
        try:
            annotation = _annotation_of(key)
        except _UnknownKey as exc:
            _fail(src, where, str(exc))
        value = copy.deepcopy(value)
        if (isinstance(value, dict) and len(value) == 1 and not is_distribution(value)
                and not _accepts_mapping(annotation)):
            name = next(iter(value))
            _fail(src, where, f"unknown distribution {name!r} (known: "
                              f"{', '.join(DISTRIBUTIONS)}; a plain value fixes the key)")
        if is_distribution(value):
            name, args = next(iter(value.items()))
            value = {name: _check_distribution(name, args, annotation, src, where)}
            if name == "choice":
                value = {name: [_absolute_paths(key, v, folder) for v in value[name]]}
        else:
            _check_number_type(value, annotation, src, where)
            value = _absolute_paths(key, value, folder)
        result[key] = value
    _check_overlaps(list(result), src)
    _check_exclusive_pairs(list(result), src)
    if not searched_keys_of(result):
        _fail(src, "space", "no key has a distribution: nothing to search")
    return result


def _check_overlaps(keys: list[str], src: str) -> None:
    """Reject `model` together with `model.image_size`: one would silently overwrite the other."""
    for key in keys:
        for other in keys:
            if other.startswith(key + "."):
                _fail(src, f"space.{other}", f"overlaps `space.{key}`: give one of them")


def _check_exclusive_pairs(keys: list[str], src: str) -> None:
    for side_a, side_b in _EXCLUSIVE:
        in_a = [k for k in keys if any(k == p or k.startswith(p + ".") for p in side_a)]
        in_b = [k for k in keys if any(k == p or k.startswith(p + ".") for p in side_b)]
        if in_a and in_b:
            _fail(src, f"space.{in_b[0]}", f"excludes `space.{in_a[0]}`: give one of them")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_distribution(name: str, args: Any, annotation: Any, src: str, where: str) -> list:
    """Validate `{name: args}` against its own rules and the key's type; return args."""
    if name == "choice":
        if not isinstance(args, list) or not args:
            _fail(src, where, "choice needs a non-empty list of values, e.g. {choice: [a, b]}")
        for i, value in enumerate(args):
            if any(type(v) is type(value) and v == value for v in args[:i]):
                _fail(src, where, f"choice value {value!r} is listed twice")
            _check_number_type(value, annotation, src, where)
        return list(args)
    quantized = name in QUANTIZED_DISTRIBUTIONS
    shape = "[low, high, q]" if quantized else "[low, high]"
    if not isinstance(args, list) or len(args) != (3 if quantized else 2):
        _fail(src, where, f"{name} takes {shape}, got {_describe(args)}")
    is_int = name in INT_DISTRIBUTIONS
    for arg in args:
        if not _is_number(arg) or not math.isfinite(arg):
            _fail(src, where, f"{name} takes numbers {shape}, got {_describe(arg)}")
        if is_int and not isinstance(arg, int):
            _fail(src, where, f"{name} takes integers {shape}, got {_describe(arg)}")
    low, high = args[0], args[1]
    if low >= high:
        _fail(src, where, f"{name}: low ({low}) must be below high ({high})")
    if name in LOG_DISTRIBUTIONS and low <= 0:
        _fail(src, where, f"{name}: low must be > 0 on a log scale, got {low}")
    if quantized:
        q = args[2]
        if q <= 0:
            _fail(src, where, f"{name}: q must be > 0, got {q}")
        for bound in (low, high):
            if not _is_multiple(bound, q):
                _fail(src, where, f"{name}: bound {bound} is not a multiple of q={q}")
    kinds = _numeric_kinds(_strip_optional(annotation))
    draws = "int" if is_int else "float"
    if kinds is not None and draws not in kinds:
        if not kinds:
            _fail(src, where, f"{name} draws numbers, but this key takes "
                              f"{_type_words(annotation)}; use choice")
        _fail(src, where, f"{name} draws floats, but this key takes integers: use randint, "
                          "qrandint or lograndint")
    if where == "space.training_args.warmup_steps" and not is_int and low < 1 <= high:
        _fail(src, where, "range mixes a ratio (< 1) with a number of steps (>= 1): "
                              "keep a float range below 1, or use randint for steps")
    return [float(a) for a in args] if not is_int else list(args)


def _is_multiple(value: float, q: float) -> bool:
    ratio = value / q
    return math.isclose(ratio, round(ratio), rel_tol=1e-9, abs_tol=1e-9)


def _check_number_type(value: Any, annotation: Any, src: str, where: str) -> None:
    """A float for an integer-only field is caught here (TrainingArguments does not check)."""
    if _is_number(value) and isinstance(value, float):
        kinds = _numeric_kinds(_strip_optional(annotation))
        if kinds == {"int"}:
            _fail(src, where, f"expected an integer, got {_describe(value)}")


def _absolute_paths(key: str, value: Any, folder: Path) -> Any:
    """Resolve path strings within a value set at `key` (the rules of detr_core.resolve_paths)."""
    for path_key in _PATH_KEYS:
        if path_key == key:
            return _absolute(path_key, value, folder)
        if path_key.startswith(key + ".") and isinstance(value, dict):
            sub = path_key[len(key) + 1:].split(".")
            node: Any = value
            for part in sub[:-1]:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and sub[-1] in node:
                node[sub[-1]] = _absolute(path_key, node[sub[-1]], folder)
    return value


def _absolute(path_key: str, value: Any, folder: Path) -> Any:
    if not isinstance(value, str):
        return value
    if path_key == "model.checkpoint" and not (
        value.startswith((".", "/", "~")) or (folder / value).exists()
    ):
        return value  # a Hub name such as facebook/detr-resnet-50
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (folder / path).resolve())


# ---------------------------------------------------------------------------------------------
# validation against the run config


def candidate_values(dist: dict) -> list[Any]:
    """Values that stand for a distribution when checking it: every choice, else both ends."""
    name, args = next(iter(dist.items()))
    if name == "choice":
        return list(args)
    return [args[0], args[1]]


def _validate_space_values(base: dict[str, Any], space: dict[str, Any], src: str) -> None:
    """Build and validate the run config with each fixed value, every choice and both ends."""
    fixed = {k: v for k, v in space.items() if not is_distribution(v)}
    for key, value in fixed.items():
        _check_value(base, {key: value}, src, key, value)
    first: dict[str, Any] = {}
    for key in searched_keys_of(space):
        values = candidate_values(space[key])
        for value in values:
            _check_value(base, {**fixed, key: value}, src, key, value)
        first[key] = values[0]
    try:
        run_config_from_dict(apply_overrides(base, {**fixed, **first}), source=_SENTINEL)
    except UserInputError as exc:
        key, problem = _rekey(str(exc), "")
        _fail(src, "space", f"the first values of the space together give an invalid run "
                            f"config ({key}: {problem})")


def _check_value(base: dict, params: dict, src: str, key: str, value: Any) -> None:
    try:
        run_config_from_dict(apply_overrides(base, params), source=_SENTINEL)
    except UserInputError as exc:
        inner, problem = _rekey(str(exc), "")
        detail = problem if inner in (key, "training_args") else f"{inner}: {problem}"
        _fail(src, f"space.{key}", f"value {value!r} is not valid here: {detail}")


# ---------------------------------------------------------------------------------------------
# the `experiment:` section


def _experiment_with_overrides(
    experiment: Any, overrides: dict | None, src: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """`experiment:` with CLI overrides merged in, and where each overridden value came from."""
    experiment = copy.deepcopy(_as_mapping(experiment, src, "experiment"))
    for key in experiment:
        if key not in EXPERIMENT_KEYS:
            _fail(src, f"experiment.{key}", f"unknown key (known: {', '.join(EXPERIMENT_KEYS)})")
    for section, known in (("scheduler", SCHEDULER_KEYS), ("searcher", SEARCHER_KEYS),
                           ("resources", RESOURCE_KEYS)):
        experiment[section] = dict(_as_mapping(experiment.get(section), src,
                                               f"experiment.{section}"))
        for key in experiment[section]:
            if key not in known:
                _fail(src, f"experiment.{section}.{key}",
                      f"unknown key (known: {', '.join(known)})")
    origin: dict[str, str] = {}
    for key, value in (overrides or {}).items():
        if key not in OVERRIDE_KEYS:
            raise ValueError(f"unknown search-spec override {key!r}")
        if value is None:
            continue
        path, flag = OVERRIDE_KEYS[key]
        node = experiment
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        origin[".".join(path)] = flag
    return experiment, origin


class _Reader:
    """Typed reads of `experiment:` values with errors naming the key (or the CLI flag)."""

    def __init__(self, experiment: dict[str, Any], origin: dict[str, str], src: str):
        self.experiment, self.origin, self.src = experiment, origin, src

    def where(self, dotted: str) -> str:
        flag = self.origin.get(dotted)
        return f"experiment.{dotted}" + (f" (from {flag})" if flag else "")

    def fail(self, dotted: str, problem: str) -> typing.NoReturn:
        _fail(self.src, self.where(dotted), problem)

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.experiment
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def integer(self, dotted: str, default: Any, minimum: int | None = None,
                allow_none: bool = False) -> Any:
        value = self.get(dotted, default)
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(dotted, f"expected an integer, got {_describe(value)}")
        if minimum is not None and value < minimum:
            self.fail(dotted, f"must be >= {minimum}, got {value}")
        return value

    def number(self, dotted: str, default: Any) -> float:
        value = self.get(dotted, default)
        if not _is_number(value) or not math.isfinite(value):
            self.fail(dotted, f"expected a number, got {_describe(value)}")
        return float(value)


def _build_spec(
    experiment: tuple[dict[str, Any], dict[str, str]],
    base: dict[str, Any],
    space: dict[str, Any],
    path: Path,
    base_source: str,
) -> SearchSpec:
    """Read and check every experiment setting; fill defaults that depend on the base."""
    r = _Reader(*experiment, str(path))
    name = r.get("name", path.stem)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        r.fail("name", f"must be a folder name (letters, digits, . _ -), got {_describe(name)}")
    metric = r.get("metric", DEFAULT_METRIC)
    if metric not in REPORTED_METRICS:
        r.fail("metric", f"{metric!r} is not reported by trials (one of: "
                         f"{', '.join(REPORTED_METRICS)})")
    mode = r.get("mode", natural_mode(metric))
    if mode not in ("min", "max"):
        r.fail("mode", f"must be min or max, got {_describe(mode)}")
    num_samples = r.integer("num_samples", DEFAULT_NUM_SAMPLES, minimum=1)
    max_concurrent = r.integer("max_concurrent", None, minimum=1, allow_none=True)
    max_failures = r.integer("max_failures", 0, minimum=-1)
    resources = ResourceSpec(
        cpus_per_trial=_resource(r, "resources.cpus_per_trial", 1, positive=True),
        gpus_per_trial=_resource(r, "resources.gpus_per_trial", 0, positive=False),
    )
    searcher = SearcherSpec(
        seed=r.integer("searcher.seed", 0, allow_none=True),
        n_startup_trials=r.integer("searcher.n_startup_trials",
                                   min(10, max(1, math.ceil(num_samples / 2))), minimum=0),
    )
    scheduler = _scheduler(r, base, space)
    base = _select_best_step_by(base, metric, mode)
    return SearchSpec(
        name=name, metric=metric, mode=mode, num_samples=num_samples,
        max_concurrent=max_concurrent, scheduler=scheduler, searcher=searcher,
        resources=resources, max_failures=max_failures, base=base, space=space,
        source=path, base_source=base_source,
    )


def _select_best_step_by(base: dict[str, Any], metric: str, mode: str) -> dict[str, Any]:
    """The base with the Trainer's best-step rule set to the search's metric and mode.

    Each trial keeps the checkpoint of its best step, and the search ranks trials by the same
    metric: both must agree, or the exported model would be the best step by another metric.
    """
    base = copy.deepcopy(base)
    args = base.setdefault("training_args", {})
    args["metric_for_best_model"] = metric
    args["greater_is_better"] = mode == "max"
    return base


def _resource(r: _Reader, dotted: str, default: float, positive: bool) -> float:
    """CPUs > 0 (GPUs >= 0); above 1 it must be whole, as Ray requires of fractional resources."""
    value = r.number(dotted, default)
    if positive and value <= 0:
        r.fail(dotted, f"must be > 0, got {value:g}")
    if value < 0:
        r.fail(dotted, f"must be >= 0, got {value:g}")
    if value > 1 and not value.is_integer():
        r.fail(dotted, f"above 1 it must be a whole number (Ray's rule), got {value:g}")
    return value


def _scheduler(r: _Reader, base: dict[str, Any], space: dict[str, Any]) -> SchedulerSpec:
    """ASHA settings; max_t and grace_period default to what the base run does."""
    max_t = r.get("scheduler.max_t")
    if max_t is None:
        max_t = estimate_max_steps(base, space)
        if max_t is None:
            r.fail("scheduler.max_t", "required here: give the optimizer steps of the longest "
                                      "trial (the base trains on COCO files, not read here)")
    else:
        max_t = r.integer("scheduler.max_t", None, minimum=1)
    grace = r.get("scheduler.grace_period")
    if grace is None:
        grace = min(_first_eval_step(base, space, max_t), max_t)
    else:
        grace = r.integer("scheduler.grace_period", None, minimum=1)
    rf = r.number("scheduler.reduction_factor", DEFAULT_REDUCTION_FACTOR)
    if rf <= 1:
        r.fail("scheduler.reduction_factor", f"must be > 1, got {rf:g}")
    if max_t < grace:
        r.fail("scheduler.max_t", f"must be >= grace_period ({grace}), got {max_t}")
    return SchedulerSpec(grace_period=grace, reduction_factor=rf, max_t=max_t)


def _training_arg_values(base: dict[str, Any], space: dict[str, Any], key: str) -> list[Any]:
    """Values `training_args.<key>` can take: the searched candidates, the fixed or base value."""
    from detr_core.training_args import DEFAULT_TRAINING_ARGS

    dotted = f"training_args.{key}"
    if dotted in space:
        value = space[dotted]
        return candidate_values(value) if is_distribution(value) else [value]
    args = base.get("training_args", {})
    if key in args:
        return [args[key]]
    return [DEFAULT_TRAINING_ARGS.get(key)]


def _numbers(values: list[Any]) -> list[float]:
    return [v for v in values if _is_number(v)]


def estimate_max_steps(base: dict[str, Any], space: dict[str, Any]) -> int | None:
    """Optimizer steps of the longest trial, when the base makes that knowable; else None.

    `max_steps` when set; for the synthetic dataset, epochs x ceil(images / batch) /
    gradient accumulation, taking the longest end of every searched range. COCO files are not
    read here (they can be large), so a COCO base returns None.
    """
    max_steps = _numbers(_training_arg_values(base, space, "max_steps"))
    if max_steps and max(max_steps) > 0:
        return int(max(max_steps))
    synthetic = base.get("data", {}).get("synthetic")
    if "data.synthetic.num_train" in space:
        images = _numbers(candidate_values(space["data.synthetic.num_train"]))
    elif synthetic is not None:
        images = [synthetic.get("num_train", 1000)]
    else:
        return None
    batch = _numbers(_training_arg_values(base, space, "per_device_train_batch_size")) or [8]
    epochs = _numbers(_training_arg_values(base, space, "num_train_epochs")) or [3]
    accumulation = _numbers(_training_arg_values(base, space, "gradient_accumulation_steps"))
    per_epoch = max(1, math.ceil(max(images) / max(1, min(batch))) // max(1, min(accumulation
                                                                                 or [1])))
    return max(1, math.ceil(max(epochs) * per_epoch))


def _first_eval_step(base: dict[str, Any], space: dict[str, Any], max_t: int) -> int:
    """Step of the first evaluation (logging_steps; a value < 1 is a ratio of max_t)."""
    values = _numbers(_training_arg_values(base, space, "logging_steps")) or [500]
    first = min(values)
    if first < 1:
        return max(1, math.floor(first * max_t))
    return max(1, math.ceil(first))


# ---------------------------------------------------------------------------------------------
# Tune


def to_tune_param_space(spec: SearchSpec) -> dict:
    """Flat `{dotted_key: tune domain or fixed value}` for `Tuner(param_space=...)`.

    Our integer bounds are inclusive; `tune.randint` / `tune.lograndint` exclude the upper
    bound, so they get `high + 1` (Ray's Optuna converter subtracts it again). `qrandint` with
    q = 1 becomes `randint`, since Ray treats its upper bound inconsistently for q = 1.
    """
    from ray import tune

    params: dict[str, Any] = {}
    for key, value in spec.space.items():
        params[key] = _tune_domain(tune, value) if is_distribution(value) else copy.deepcopy(
            value)
    return params


def _tune_domain(tune: Any, dist: dict) -> Any:
    name, args = next(iter(dist.items()))
    if name == "choice":
        return tune.choice(copy.deepcopy(args))
    if name == "randint" or (name == "qrandint" and args[2] == 1):
        return tune.randint(args[0], args[1] + 1)
    if name == "lograndint":
        return tune.lograndint(args[0], args[1] + 1)
    return getattr(tune, name)(*args)


def quantize_params(space: dict, params: dict) -> dict:
    """Round each value of a quantized key to its q (clipped to the bounds); others unchanged.

    Needed for `qloguniform` (Optuna drops its q) and harmless elsewhere: it also turns
    Optuna's `0.30000000000000004` steps into `0.3`.
    """
    result = dict(params)
    for key, value in params.items():
        dist = space.get(key)
        if not is_distribution(dist) or not _is_number(value):
            continue
        name, args = next(iter(dist.items()))
        if name not in QUANTIZED_DISTRIBUTIONS:
            continue
        low, high, q = args
        snapped = min(max(round(value / q) * q, low), high)
        result[key] = int(snapped) if name == "qrandint" else round(float(snapped), 12)
    return result


def run_config_for_trial(spec_base: dict, trial_params: dict, space: dict | None = None) -> dict:
    """The run-config dict of one trial: `spec_base` with its flat dotted params set.

    Pass the spec's `space` to round quantized values to their q (see `quantize_params`).
    """
    params = quantize_params(space, trial_params) if space else trial_params
    return apply_overrides(spec_base, params)
