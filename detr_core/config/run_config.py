"""Which run-config values are file-system paths, and making them absolute.

Tune trials run in their own working directory, and a run YAML names data and checkpoint
folders relative to itself: every such value is made absolute once, when the file is read
(`load_run_config`) or when a search's values are merged into it.

One training run as a typed, validated config: YAML in, dataclasses out, YAML back.

Why dataclasses and a hand-made checker: every key a user can write is a field here with its
type, so an unknown key or a wrong type is rejected before anything starts, with a message that
names the file and the dotted key (`model.image_size: expected int, got str 'big'`).
`training_args` is the exception on purpose: any `transformers.TrainingArguments` field passes
through, checked against that dataclass instead of a copy of it.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from detr_core.config.metric_names import is_ema_metric
from detr_core.files.builtin_models import builtin_problem, is_builtin
from detr_core.files.errors import UserInputError
from detr_core.files.errors import describe_value as _describe
from detr_core.files.file_io import dump_yaml, load_yaml_mapping

if TYPE_CHECKING:  # run_config imports this module
    from detr_core.config.run_config import RunConfig

#: Dotted run-config keys whose string values are file-system paths (made absolute on load).
PATH_KEYS = (
    *(f"data.{split}.{part}" for split in ("train", "val", "test")
      for part in ("annotations", "images")),
    "data.synthetic.cache_dir",
    "model.checkpoint",
)


def is_local_checkpoint(checkpoint: str, base: Path) -> bool:
    """A `model.checkpoint` that names a folder (`./x`, `/x`, `~/x` or one that exists under
    `base`) rather than a Hub name such as `facebook/detr-resnet-50`."""
    return checkpoint.startswith((".", "/", "~")) or (base / checkpoint).exists()


def resolve_path_value(key: str, value: Any, base: Path) -> Any:
    """`value` of path key `key` made absolute against `base`; other values unchanged.

    A checkpoint that is a Hub name stays as it is (see `is_local_checkpoint`).
    """
    if key not in PATH_KEYS or not isinstance(value, str):
        return value
    if key == "model.checkpoint" and not is_local_checkpoint(value, base):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def resolve_paths(cfg: RunConfig, base: Path) -> RunConfig:
    """Return a copy whose data paths (and a checkpoint that is a local folder) are absolute.

    Tune trials run in their own working directory, so every user path is made absolute once.
    """
    cfg = copy.deepcopy(cfg)
    for key in PATH_KEYS:
        *parents, leaf = key.split(".")
        node: Any = cfg
        for part in parents:
            node = getattr(node, part, None)
        if node is not None and getattr(node, leaf, None) is not None:
            setattr(node, leaf, resolve_path_value(key, getattr(node, leaf), base))
    return cfg


IouLoss = Literal["giou", "diou", "ciou"]
#: `model_type` of every supported family (`detr_core.model.families.FAMILIES`, which a test
#: keeps equal to this list: the config layer does not import the model layer).
FamilyName = Literal["detr", "conditional_detr", "deformable_detr", "rt_detr", "rt_detr_v2",
                     "d_fine"]
DEFAULT_CONFIG_PATH = Path(__file__).parents[1] / "defaults" / "run.yaml"


#: The longest edge a run may resize images to: a square canvas of 8192 px holds 38x the pixels
#: of DETR's 1333, enough for high-resolution imagery and far from an out-of-memory typo.
MAX_IMAGE_SIZE = 8192

@dataclass
class SplitPaths:
    """A COCO split on disk: annotation JSON and the folder its `file_name`s are relative to."""

    annotations: str
    images: str


@dataclass
class SyntheticConfig:
    """Parameters of an embedded synthetic dataset (see `detr_core.data.synthetic`).

    `task` picks what the images show (`detr_core.data.synthetic`): `shapes` (rectangles,
    ellipses, triangles: the default fine-tuning task) or `pretrain` (stars, crosses, rings,
    pentagons: the task the shipped checkpoint was pretrained on).
    """

    task: Literal["shapes", "pretrain"] = "shapes"
    num_train: int = 1000
    num_val: int = 64
    num_test: int = 128
    image_size: int = 96
    min_objects: int = 1
    max_objects: int = 3
    seed: int = 0
    cache_dir: str | None = None


@dataclass
class DataConfig:
    """Either `synthetic` (generated once, cached) or COCO `train` + `val` (+ optional `test`)."""

    synthetic: SyntheticConfig | None = None
    train: SplitPaths | None = None
    val: SplitPaths | None = None
    test: SplitPaths | None = None

    @property
    def has_test_split(self) -> bool:
        """True when the run has test data: COCO `test` paths, or synthetic `num_test > 0`."""
        if self.synthetic is not None:
            return self.synthetic.num_test > 0
        return self.test is not None


@dataclass
class ModelConfig:
    """Where the weights come from and the input resolution.

    `checkpoint` is a Hub name, a `save_pretrained` folder or `builtin:<name>` (a checkpoint
    shipped with the package, `detr_core.files.builtin_models`) of any supported DETR-family
    model, whose family is read from its `config.json`; `preset: tiny` builds a small model of
    `family` (default `detr`) from random weights offline. `image_size` is the longest edge
    after resizing (DETR-style processors pad to a square canvas of that size; RT-DETR-style
    ones resize to that square). `config_overrides` sets fields of the family's config class.
    """

    preset: Literal["tiny"] | None = None
    family: FamilyName | None = None
    checkpoint: str | None = None
    image_size: int = 96
    config_overrides: dict[str, Any] = field(default_factory=dict)


def _default_train_augmentation() -> list[Any]:
    return [
        {"HorizontalFlip": {"p": 0.5}},
        {"ColorJitter": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02,
                         "p": 0.5}},
    ]


@dataclass
class AugmentationConfig:
    """albumentations transforms by class name, per split; boxes use COCO bbox params."""

    train: list[Any] = field(default_factory=_default_train_augmentation)
    val: list[Any] = field(default_factory=list)
    min_area: float = 4.0
    min_visibility: float = 0.0


@dataclass
class EvaluationConfig:
    """Test-metric settings: detections below `score_threshold` are not counted as found.

    `test_during_training` also evaluates the test split at every evaluation (as `test_*`
    metrics in `eval_history.jsonl`): for learning-curve benchmarks, never for choosing.
    """

    score_threshold: float = 0.5
    batch_size: int = 16
    test_during_training: bool = False


@dataclass
class EmaConfig:
    """Averaged weights (`detr_core.training.ema`), evaluated at every evaluation as `eval_ema_*`.

    `decay` caps the decay of the moving average (at most about `1 / (1 - decay)` steps are
    averaged); `warmup_power` sets how fast it gets there: the decay at step t is
    `min(decay, 1 - t ** -warmup_power)` (timm `ModelEmaV3`'s warm-up), so early
    evaluations average few steps and late ones many. `metric_for_best_model: eval_ema_...`
    chooses the best step by the average, and exports its weights.
    """

    decay: float = 0.999
    warmup_power: float = 0.75


@dataclass
class RunConfig:
    """Everything one fine-tuning run needs; one YAML file is one of these."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    iou_loss: IouLoss = "giou"
    freeze_backbone: bool = False
    #: The backbone's learning rate as a multiple of `training_args.learning_rate` (its own
    #: optimizer group); unset: the checkpoint's recipe (`detr_core.model.recipes`), else 1.
    backbone_lr_ratio: float | None = None
    training_args: dict[str, Any] = field(default_factory=dict)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    ema: EmaConfig | None = None
    seed: int = 42
    num_threads: int | None = None


# ---------------------------------------------------------------------------------------------
# dict -> dataclass with validation


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against annotation `tp`; build nested dataclasses; raise naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        candidates = [o for o in options if o is not type(None)]
        if len(candidates) == 1 and dataclasses.is_dataclass(candidates[0]) \
                and isinstance(value, dict):  # `Section | None`: keep the nested key's message
            return _convert(value, candidates[0], key, source)
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key, source)
            except UserInputError:
                continue
        _fail(source, key, f"expected {_type_name(tp)}, got {_describe(value)}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            _fail(source, key, f"must be one of {_type_name(tp)}, got {_describe(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            _fail(source, key, f"expected a mapping, got {_describe(value)}")
        return _build(tp, value, key, source)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            _fail(source, key, f"expected a mapping, got {_describe(value)}")
        return dict(value)
    if origin is list or tp is list:
        if not isinstance(value, list):
            _fail(source, key, f"expected a list, got {_describe(value)}")
        return list(value)
    if tp is bool:
        if not isinstance(value, bool):
            _fail(source, key, f"expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(source, key, f"expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(source, key, f"expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(source, key, f"expected a string, got {_describe(value)}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")  # a bug here, not user input


def _fail(source: str, key: str, problem: str) -> typing.NoReturn:
    raise UserInputError(problem, source=source, key=key)


def _build(cls: type, raw: dict[str, Any], prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            known = ", ".join(sorted(names))
            _fail(source, dotted, f"unknown key (known keys here: {known})")
        kwargs[key] = _convert(value, hints[key], dotted, source)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        _fail(source, f"{prefix}.{missing[0]}" if prefix else missing[0], "required key is missing")
    return cls(**kwargs)


def _check_semantics(cfg: RunConfig, source: str) -> None:
    data = cfg.data
    if data.synthetic is None and data.train is None:
        _fail(source, "data", "give either `synthetic:` or `train:` and `val:` COCO splits")
    if data.synthetic is not None and (data.train or data.val or data.test):
        _fail(source, "data",
              "`synthetic` and COCO paths (`train`/`val`/`test`) exclude each other")
    if data.train is not None and data.val is None:
        _fail(source, "data.val", "required when `data.train` is given")
    if data.synthetic is not None:
        syn = data.synthetic
        for name in ("num_train", "num_val", "image_size", "min_objects"):
            if getattr(syn, name) < 1:
                _fail(source, f"data.synthetic.{name}", "must be >= 1")
        if syn.num_test < 0:
            _fail(source, "data.synthetic.num_test", "must be >= 0")
        if syn.max_objects < syn.min_objects:
            _fail(source, "data.synthetic.max_objects", "must be >= data.synthetic.min_objects")
        if syn.image_size < 32:
            _fail(source, "data.synthetic.image_size", "must be >= 32 pixels")
    model = cfg.model
    if (model.preset is None) == (model.checkpoint is None):
        _fail(source, "model", "give exactly one of `preset: tiny` or `checkpoint: NAME_OR_DIR`")
    if model.family is not None and model.preset is None:
        _fail(source, "model.family", "only with `preset: tiny` (a checkpoint's family is read "
              "from its config.json)")
    if model.image_size < 32:
        _fail(source, "model.image_size", "must be >= 32 pixels")
    if model.image_size > MAX_IMAGE_SIZE:
        # a batch of such canvases needs tens of GB before the first step (seen: 100000 px
        # tried to allocate 26 GB and ended in an out-of-memory traceback)
        _fail(source, "model.image_size",
              f"must be <= {MAX_IMAGE_SIZE} pixels (DETR trains at 800-1333), got "
              f"{model.image_size}")
    if is_builtin(model.checkpoint):
        problem = builtin_problem(str(model.checkpoint))
        if problem:
            _fail(source, "model.checkpoint", problem)
    if cfg.backbone_lr_ratio is not None and not 0.0 < cfg.backbone_lr_ratio <= 100.0:
        _fail(source, "backbone_lr_ratio", f"must be in (0, 100], got {cfg.backbone_lr_ratio!r} "
              "(a still backbone: freeze_backbone: true)")
    if cfg.num_threads is not None and cfg.num_threads < 1:
        _fail(source, "num_threads", "must be >= 1 (or null for all cores)")
    if not 0.0 <= cfg.evaluation.score_threshold <= 1.0:
        _fail(source, "evaluation.score_threshold", "must be within [0, 1]")
    if cfg.evaluation.batch_size < 1:
        _fail(source, "evaluation.batch_size", f"must be >= 1, got {cfg.evaluation.batch_size}")
    if not cfg.augmentation.min_area >= 0:
        _fail(source, "augmentation.min_area", "must be >= 0 (pixels)")
    if not 0.0 <= cfg.augmentation.min_visibility <= 1.0:
        _fail(source, "augmentation.min_visibility", "must be within [0, 1]")
    if cfg.ema is not None:
        if not 0.0 <= cfg.ema.decay < 1.0:
            _fail(source, "ema.decay", f"must be in [0, 1), got {cfg.ema.decay!r}")
        if not cfg.ema.warmup_power > 0.0:
            _fail(source, "ema.warmup_power", f"must be > 0, got {cfg.ema.warmup_power!r}")
    best_by = cfg.training_args.get("metric_for_best_model")
    if cfg.ema is None and isinstance(best_by, str) and is_ema_metric(best_by):
        _fail(source, "training_args.metric_for_best_model",
              f"{best_by} is a metric of averaged weights: add `ema: {{}}` to the run config")
    from detr_core.config.training_args import check_training_args  # heavy import, only when needed

    check_training_args(cfg.training_args, source)


def run_config_from_dict(raw: dict[str, Any], source: str = "<config>") -> RunConfig:
    """Validate a run-config mapping and return it typed; `source` names it in error messages."""
    if not isinstance(raw, dict):
        raise UserInputError("top level must be a mapping", source=source)
    cfg = _build(RunConfig, raw, "", source)
    _check_semantics(cfg, source)
    return cfg


def load_run_config(path: str | Path) -> RunConfig:
    """Read and validate one run YAML; relative data/model paths are resolved against its folder."""
    path = Path(path)
    raw = load_yaml_mapping(path)
    cfg = run_config_from_dict(raw, source=str(path))
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

    return strip(dataclasses.asdict(cfg))


def save_run_config(cfg: RunConfig, path: str | Path, header: str = "") -> None:
    """Write `cfg` as YAML that `load_run_config` reads back to an equal config."""
    dump_yaml(run_config_to_dict(cfg), path, header=header)


def set_dotted(raw: dict[str, Any], dotted_key: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, creating intermediate mappings (used for searched values)."""
    parts = dotted_key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep copy of `raw` with each dotted key of `overrides` set (fixed + sampled values)."""
    merged = copy.deepcopy(raw)
    for key, value in overrides.items():
        set_dotted(merged, key, value)
    return merged
