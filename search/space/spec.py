"""Search-space files: YAML -> validated `SearchSpec` (README "Search-space files"), the
spec's own file `<experiment>/search_spec.yaml` (written when the search starts, read back by
the export, so the report is rebuilt from the folder alone) and its Tune `param_space`.

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
  searcher:                      # Optuna
    sampler: tpe                 # tpe (default) | gp | random | qmc | cmaes (search.space.samplers)
    sampler_options: {}          # the sampler's own options, e.g. {multivariate: true}
    seed: 0                      # default 0; null = a different search each time
    n_startup_trials: 4          # random trials first; default min(10, ceil(num_samples/2))
    points_to_evaluate:          # tried first, in order (search.space.spec)
      - {iou_loss: ciou}         # keys left out are sampled
  resources: {cpus_per_trial: 1, gpus_per_trial: 0}   # gpus may be fractional: 0.5 = 2 per GPU
  max_failures: 0                # retries of an errored trial from its last checkpoint (-1: no cap)
  finalists: {top: 3, seeds: 3}  # optional: the 3 best configurations, 3 fresh seeds each, after
                                 # the search; winner by mean value (search.results.finalists)
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

Distributions: `search.space.distributions`. The four values a checkpoint's recipe fills
(`training_args.learning_rate`, `backbone_lr_ratio`, `training_args.weight_decay`,
`training_args.max_grad_norm`) may be factors of the recipe's,
`{loguniform: [0.25, 2.0], relative_to: recipe}`, resolved against the base run's model or,
when a model key is searched, per trial (`search.space.relative_ranges`).

Searchable keys: every field of the run config (`detr_core.config.run_config`, dotted:
`model.image_size`, `model.config_overrides.<field of the family config>`) and any
`TrainingArguments` field as `training_args.<field>`. Keys that exclude each other
(`model.preset` / `model.checkpoint`, `data.synthetic` / `data.train|val|test`,
`training_args.warmup_steps` / `warmup_ratio`): setting one drops the other from the base.
Relative paths are resolved against the space file's folder.

`points_to_evaluate` are enqueued in the Optuna study when it is first created (skipped when
the study already holds them, so a resumed search does not repeat them); they count toward
`num_samples` and TPE's startup trials. A `relative_to: recipe` key takes a factor there too.

Everything is checked before Ray starts, one line naming the file and the dotted key: unknown
keys, bad bounds, a distribution that cannot produce the key's type, and every choice value and
both ends of every range built into a run config (`iou_loss: {choice: [giou, xiou]}` fails
here, not in a trial). Tune domains keep the dotted names (Ray nests on "/" only).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detr_core.config.config_keys import (
    EXCLUSIVE_KEYS,
    is_section,
    key_type,
    strip_optional,
    touches,
)
from detr_core.config.metric_names import DEFAULT_METRIC, SELECTABLE_EVAL_METRICS, natural_mode
from detr_core.config.run_config import (
    DEFAULT_CONFIG_PATH,
    apply_overrides,
    load_run_config,
    resolve_path_value,
    resolve_paths,
    run_config_from_dict,
    run_config_to_dict,
)
from detr_core.files.errors import UserInputError, describe_value
from detr_core.files.file_io import dumps_yaml, load_yaml_mapping, parse_yaml_mapping
from search.space.budget import asha_rungs, estimate_max_steps, first_eval_step
from search.space.distributions import (
    DISTRIBUTIONS,
    INT_DISTRIBUTIONS,
    accepts_mapping,
    candidate_values,
    check_distribution,
    check_number_type,
    describe_distribution,
    fits,
    fixed_values_of,
    format_value,
    is_distribution,
    is_number,
    log_scale_keys_of,
    numeric_kinds,
    searched_keys_of,
)
from search.space.relative_ranges import resolve_relative, split_relative
from search.space.samplers import DEFAULT_SAMPLER, check_sampler
from search.store.layout import SPEC_FILE
from search.store.storage import ExperimentPath, write_text_atomic


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
    """Optuna settings: sampler seed (None: random), random trials before the model takes
    over, the configurations to try first (`search.space.spec`: partial, in the
    space's terms, so a recipe-relative key resolved per trial holds a factor), and which
    sampler with which options (`search.space.samplers`)."""

    seed: int | None
    n_startup_trials: int
    points_to_evaluate: list[dict[str, Any]] = field(default_factory=list)
    sampler: str = "tpe"
    sampler_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ResourceSpec:
    """What one trial reserves; a fraction of a GPU packs several trials on one card."""

    cpus_per_trial: float
    gpus_per_trial: float


@dataclass
class FinalistsSpec:
    """The finalists stage after the search (`search.results.finalists`): the `top` best
    distinct configurations re-trained with `seeds` fresh seeds each, the winner chosen by
    their mean validation value. Off when `top` is 0."""

    top: int = 0
    seeds: int = 0

    @property
    def on(self) -> bool:
        return self.top > 0 and self.seeds > 0


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
    #: where the recipe's four keys get their values, and the ranges resolved from factors of
    #: the recipe's (`search.space.relative_ranges`)
    recipe: dict = field(default_factory=dict)
    finalists: FinalistsSpec = field(default_factory=FinalistsSpec)

    def searched_keys(self) -> list[str]:
        """Keys drawn from a distribution, in file order."""
        return searched_keys_of(self.space)

    def fixed_values(self) -> dict:
        """Keys given a plain value: the same for every trial."""
        return fixed_values_of(self.space)

    def log_scale_keys(self) -> set[str]:
        """Keys searched on a log scale (plots use a log axis for them)."""
        return log_scale_keys_of(self.space)

    def to_yaml_dict(self) -> dict:
        """Plain dict written as `<experiment>/search_spec.yaml` (see `from_yaml_dict`)."""
        return {
            "name": self.name,
            "source": str(self.source),
            "base_source": self.base_source,
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
                "points_to_evaluate": copy.deepcopy(self.searcher.points_to_evaluate),
                "sampler": self.searcher.sampler,
                "sampler_options": copy.deepcopy(self.searcher.sampler_options),
                "cpus_per_trial": self.resources.cpus_per_trial,
                "gpus_per_trial": self.resources.gpus_per_trial,
                "max_failures": self.max_failures,
                "finalists_top": self.finalists.top,
                "finalists_seeds": self.finalists.seeds,
            },
            "base": copy.deepcopy(self.base),
            "space": copy.deepcopy(self.space),
            "recipe": copy.deepcopy(self.recipe),
        }

    @classmethod
    def from_yaml_dict(cls, raw: dict[str, Any], source: str | Path) -> SearchSpec:
        """The spec `to_yaml_dict` wrote; `UserInputError` naming `source` if it is not one."""
        exp = raw.get("experiment")
        base, space = raw.get("base"), raw.get("space")
        recipe = raw.get("recipe") or {}  # absent in folders written before recipes
        if not all(isinstance(part, dict) for part in (exp, base, space, recipe)):
            raise UserInputError("not a search spec (needs `experiment`, `base` and `space` "
                                 "mappings)", source=source)
        try:
            return cls(
                name=str(raw["name"]), metric=str(exp["metric"]), mode=str(exp["mode"]),
                num_samples=int(exp["num_samples"]), max_concurrent=exp.get("max_concurrent"),
                scheduler=SchedulerSpec(int(exp["grace_period"]),
                                        float(exp["reduction_factor"]), int(exp["max_t"])),
                searcher=SearcherSpec(exp.get("searcher_seed"), int(exp["n_startup_trials"]),
                                      list(exp.get("points_to_evaluate") or []),
                                      str(exp.get("sampler", "tpe")),  # older folders: TPE
                                      dict(exp.get("sampler_options") or {})),
                resources=ResourceSpec(float(exp["cpus_per_trial"]),
                                       float(exp["gpus_per_trial"])),
                max_failures=int(exp.get("max_failures", 0)), base=base, space=space,
                source=Path(str(raw.get("source", source))),
                base_source=str(raw.get("base_source", "embedded default")), recipe=recipe,
                finalists=FinalistsSpec(int(exp.get("finalists_top", 0)),
                                        int(exp.get("finalists_seeds", 0))),
            )
        except KeyError as exc:
            raise UserInputError("missing (written by search/run.py; was the file edited?)",
                                 source=source, key=f"experiment.{exc.args[0]}") from None
        except (TypeError, ValueError) as exc:
            raise UserInputError(f"not a search spec: {exc}", source=source) from None


def write_spec_file(spec: SearchSpec, experiment_dir: ExperimentPath) -> ExperimentPath:
    """`<experiment>/search_spec.yaml`: the resolved search, read back by the export."""
    text = dumps_yaml(spec.to_yaml_dict(),
                      header="Written by search/run.py: the resolved search (read by export.py).")
    return write_text_atomic(experiment_dir / SPEC_FILE, text)


def read_spec_file(experiment_dir: ExperimentPath) -> SearchSpec:
    """The spec of an experiment folder; `UserInputError` when the folder is not one."""
    path = experiment_dir / SPEC_FILE
    if not path.is_file():
        raise UserInputError(f"not a search experiment folder (no {SPEC_FILE}; give the "
                             "folder `search/run.py` wrote, e.g. results/<name>)",
                             source=experiment_dir)
    return SearchSpec.from_yaml_dict(parse_yaml_mapping(path.read_text(encoding="utf-8"), path),
                                     path)


#: Metrics the trainable reports at every evaluation; `experiment.metric` must be one of them.
REPORTED_METRICS = SELECTABLE_EVAL_METRICS

EXPERIMENT_KEYS = (
    "name", "metric", "mode", "num_samples", "max_concurrent", "scheduler", "searcher",
    "resources", "max_failures", "finalists",
)
SCHEDULER_KEYS = ("grace_period", "reduction_factor", "max_t")
SEARCHER_KEYS = ("seed", "n_startup_trials", "points_to_evaluate", "sampler", "sampler_options")
RESOURCE_KEYS = ("cpus_per_trial", "gpus_per_trial")
FINALISTS_KEYS = ("top", "seeds")

#: `load_search_spec(overrides=...)` key -> (path in `experiment:`, CLI flag shown in errors).
OVERRIDE_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "name": (("name",), "--name"),
    "num_samples": (("num_samples",), "--num-samples"),
    "max_concurrent": (("max_concurrent",), "--max-concurrent"),
    "cpus_per_trial": (("resources", "cpus_per_trial"), "--cpus-per-trial"),
    "gpus_per_trial": (("resources", "gpus_per_trial"), "--gpus-per-trial"),
    "seed": (("searcher", "seed"), "--seed"),
    "sampler": (("searcher", "sampler"), "--sampler"),
    "max_failures": (("max_failures",), "--max-failures"),
    "finalists_top": (("finalists", "top"), "--finalists"),
    "finalists_seeds": (("finalists", "seeds"), "--finalist-seeds"),
}

DEFAULT_NUM_SAMPLES = 8
DEFAULT_REDUCTION_FACTOR = 3.0
DEFAULT_SEARCHER_SEED = 0
DEFAULT_MAX_FAILURES = 0
DEFAULT_FINALISTS_TOP = 3  # when the section is given without it
DEFAULT_FINALIST_SEEDS = 3
DEFAULT_CPUS_PER_TRIAL = 1
DEFAULT_GPUS_PER_TRIAL = 0

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def default_startup_trials(num_samples: int) -> int:
    """Random trials before TPE takes over: half the trials, at most 10."""
    return min(10, max(1, math.ceil(num_samples / 2)))


def as_mapping(value: Any, src: str, key: str) -> dict:
    """`value` as a dict; None (an empty YAML section) counts as {}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserInputError(f"expected a mapping, got {describe_value(value)}", source=src,
                             key=key)
    return value


def experiment_with_overrides(
    experiment: Any, overrides: dict | None, src: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """`experiment:` with CLI overrides merged in, and where each overridden value came from."""
    experiment = copy.deepcopy(as_mapping(experiment, src, "experiment"))
    for key in experiment:
        if key not in EXPERIMENT_KEYS:
            raise UserInputError(f"unknown key (known: {', '.join(EXPERIMENT_KEYS)})",
                                 source=src, key=f"experiment.{key}")
    finalists_given = "finalists" in experiment or any(
        key.startswith("finalists_") and value is not None
        for key, value in (overrides or {}).items())
    for section, known in (("scheduler", SCHEDULER_KEYS), ("searcher", SEARCHER_KEYS),
                           ("resources", RESOURCE_KEYS), ("finalists", FINALISTS_KEYS)):
        experiment[section] = dict(as_mapping(experiment.get(section), src,
                                              f"experiment.{section}"))
        for key in experiment[section]:
            if key not in known:
                raise UserInputError(f"unknown key (known: {', '.join(known)})", source=src,
                                     key=f"experiment.{section}.{key}")
    origin: dict[str, str] = {}
    for key, value in (overrides or {}).items():
        if key not in OVERRIDE_KEYS:
            raise ValueError(f"unknown search-spec override {key!r}")  # a bug, not user input
        if value is None:
            continue
        path, flag = OVERRIDE_KEYS[key]
        node = experiment
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        origin[".".join(path)] = flag
    if not finalists_given:
        experiment["finalists"] = {"top": 0}  # no stage unless asked for
    return experiment, origin


class _Reader:
    """Typed reads of `experiment:` values with errors naming the key (or the CLI flag)."""

    def __init__(self, experiment: dict[str, Any], origin: dict[str, str], src: str):
        self.experiment, self.origin, self.src = experiment, origin, src

    def fail(self, dotted: str, problem: str) -> typing.NoReturn:
        flag = self.origin.get(dotted)
        key = f"experiment.{dotted}" + (f" (from {flag})" if flag else "")
        raise UserInputError(problem, source=self.src, key=key)

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
            self.fail(dotted, f"expected an integer, got {describe_value(value)}")
        if minimum is not None and value < minimum:
            self.fail(dotted, f"must be >= {minimum}, got {value}")
        return value

    def number(self, dotted: str, default: Any) -> float:
        value = self.get(dotted, default)
        if not is_number(value) or not math.isfinite(value):
            self.fail(dotted, f"expected a number, got {describe_value(value)}")
        return float(value)

    def resource(self, dotted: str, default: float, positive: bool) -> float:
        """CPUs > 0 (GPUs >= 0); above 1 it must be whole, as Ray requires of fractions."""
        value = self.number(dotted, default)
        if positive and value <= 0:
            self.fail(dotted, f"must be > 0, got {value:g}")
        if value < 0:
            self.fail(dotted, f"must be >= 0, got {value:g}")
        if value > 1 and not value.is_integer():
            self.fail(dotted, f"above 1 it must be a whole number (Ray's rule), got {value:g}")
        return value


def build_spec(
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
        r.fail("name", "must be a folder name (letters, digits, . _ -), got "
                       f"{describe_value(name)}")
    metric = r.get("metric", DEFAULT_METRIC)
    if metric not in REPORTED_METRICS:
        r.fail("metric", f"{metric!r} is not reported by trials (one of: "
                         f"{', '.join(REPORTED_METRICS)})")
    mode = r.get("mode", natural_mode(metric))
    if mode not in ("min", "max"):
        r.fail("mode", f"must be min or max, got {describe_value(mode)}")
    num_samples = r.integer("num_samples", DEFAULT_NUM_SAMPLES, minimum=1)
    max_concurrent = r.integer("max_concurrent", None, minimum=1, allow_none=True)
    max_failures = r.integer("max_failures", DEFAULT_MAX_FAILURES, minimum=-1)
    resources = ResourceSpec(
        cpus_per_trial=r.resource("resources.cpus_per_trial", DEFAULT_CPUS_PER_TRIAL, True),
        gpus_per_trial=r.resource("resources.gpus_per_trial", DEFAULT_GPUS_PER_TRIAL, False),
    )
    seed = r.integer("searcher.seed", DEFAULT_SEARCHER_SEED, allow_none=True)
    startup = r.integer("searcher.n_startup_trials", default_startup_trials(num_samples),
                        minimum=0)
    sampler, options = check_sampler(r.get("searcher.sampler", DEFAULT_SAMPLER),
                                     r.get("searcher.sampler_options"), seed, startup, r.src)
    searcher = SearcherSpec(
        seed=seed, n_startup_trials=startup,
        points_to_evaluate=r.get("searcher.points_to_evaluate") or [],  # start_points checks
        sampler=sampler, sampler_options=options,
    )
    scheduler = _scheduler(r, base, space)
    finalists = FinalistsSpec(
        top=r.integer("finalists.top", DEFAULT_FINALISTS_TOP, minimum=0),
        seeds=r.integer("finalists.seeds", DEFAULT_FINALIST_SEEDS, minimum=1),
    )
    if finalists.top == 0:
        finalists = FinalistsSpec()
    base = select_best_step_by(base, metric, mode)
    return SearchSpec(
        name=name, metric=metric, mode=mode, num_samples=num_samples,
        max_concurrent=max_concurrent, scheduler=scheduler, searcher=searcher,
        resources=resources, max_failures=max_failures, base=base, space=space,
        source=path, base_source=base_source, finalists=finalists,
    )


def select_best_step_by(base: dict[str, Any], metric: str, mode: str) -> dict[str, Any]:
    """The base with the Trainer's best-step rule set to the search's metric and mode.

    Each trial keeps the checkpoint of its best step, and the search ranks trials by the same
    metric: both must agree, or the exported model would be the best step by another metric.
    """
    base = copy.deepcopy(base)
    args = base.setdefault("training_args", {})
    args["metric_for_best_model"] = metric
    args["greater_is_better"] = mode == "max"
    return base


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
        grace = min(first_eval_step(base, space, max_t), max_t)
    else:
        grace = r.integer("scheduler.grace_period", None, minimum=1)
    rf = r.number("scheduler.reduction_factor", DEFAULT_REDUCTION_FACTOR)
    if rf <= 1:
        r.fail("scheduler.reduction_factor", f"must be > 1, got {rf:g}")
    if max_t < grace:
        r.fail("scheduler.max_t", f"must be >= grace_period ({grace}), got {max_t}")
    return SchedulerSpec(grace_period=grace, reduction_factor=rf, max_t=max_t)


def parse_space(space: Any, src: str, folder: Path) -> dict[str, Any]:
    """Check every key and distribution of `space:`; return it with path values absolute."""
    if space is None:
        raise UserInputError("missing: give at least one run-config key with a distribution",
                             source=src, key="space")
    space = as_mapping(space, src, "space")
    result: dict[str, Any] = {}
    for key, value in space.items():
        if not isinstance(key, str):
            raise UserInputError("keys must be strings (dotted run-config keys)", source=src,
                                 key=f"space.{key}")
        try:
            result[key] = _parse_entry(key, copy.deepcopy(value), folder)
        except UserInputError as exc:
            raise UserInputError(exc.problem, source=src, key=f"space.{key}") from None
    _check_overlaps(list(result), src)
    _check_exclusive_pairs(list(result), src)
    if not searched_keys_of(result):
        raise UserInputError("no key has a distribution: nothing to search", source=src,
                             key="space")
    return result


def _parse_entry(key: str, value: Any, folder: Path) -> Any:
    """One `key: value` of the space, checked; raises `UserInputError` (problem only used)."""
    if touches([key], ("data",)):
        # every trial trains on the data the driver prepared and checked once
        # (`search.trial.node_data`): a data key here would be ignored by the trials
        raise UserInputError("the data is prepared once for the whole search and every trial "
                             "trains on it: set it in base_overrides (one search per dataset)")
    annotation = key_type(key)
    if (isinstance(value, dict) and len(value) > 1 and any(k in DISTRIBUTIONS for k in value)
            and not accepts_mapping(annotation)):
        raise UserInputError(f"a distribution is one key with its arguments, e.g. "
                             f"{{loguniform: [low, high]}}; got keys "
                             f"{', '.join(map(str, value))}")
    if isinstance(value, list) and numeric_kinds(strip_optional(annotation)):
        raise UserInputError(f"a list is not a value of this numeric key (got {value!r}): a "
                             "range is {uniform: [low, high]} or {loguniform: [low, high]}, a "
                             "set of values {choice: [...]}")
    if (isinstance(value, dict) and len(value) == 1 and not is_distribution(value)
            and not accepts_mapping(annotation)):
        raise UserInputError(f"unknown distribution {next(iter(value))!r} (known: "
                             f"{', '.join(DISTRIBUTIONS)}; a plain value fixes the key)")
    if not is_distribution(value):
        check_number_type(value, annotation, key)
        return resolve_paths_in(key, value, folder)
    name, args = next(iter(value.items()))
    args = check_distribution(name, args, annotation, key)
    if (key == "training_args.warmup_steps" and name not in INT_DISTRIBUTIONS
            and name != "choice" and args[0] < 1 <= args[1]):
        raise UserInputError("range mixes a ratio (< 1) with a number of steps (>= 1): keep a "
                             "float range below 1, or use randint for steps")
    if name == "choice":
        args = [resolve_paths_in(key, v, folder) for v in args]
    return {name: args}


def resolve_paths_in(key: str, value: Any, folder: Path) -> Any:
    """Path strings within a value set at `key` made absolute (detr_core's path keys)."""
    from detr_core.config.run_config import PATH_KEYS

    for path_key in PATH_KEYS:
        if path_key == key:
            return resolve_path_value(path_key, value, folder)
        if path_key.startswith(key + ".") and isinstance(value, dict):
            *parents, leaf = path_key[len(key) + 1:].split(".")
            node: Any = value
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and leaf in node:
                node[leaf] = resolve_path_value(path_key, node[leaf], folder)
    return value


def _check_overlaps(keys: list[str], src: str) -> None:
    """Reject `model` together with `model.image_size`: one would silently overwrite the other."""
    for key in keys:
        for other in keys:
            if other.startswith(key + "."):
                raise UserInputError(f"overlaps `space.{key}`: give one of them", source=src,
                                     key=f"space.{other}")


def _check_exclusive_pairs(keys: list[str], src: str) -> None:
    for side_a, side_b in EXCLUSIVE_KEYS:
        in_a = [k for k in keys if touches([k], side_a)]
        in_b = [k for k in keys if touches([k], side_b)]
        if in_a and in_b:
            raise UserInputError(f"excludes `space.{in_a[0]}`: give one of them", source=src,
                                 key=f"space.{in_b[0]}")


KEY = "experiment.searcher.points_to_evaluate"


def check_points(points: Any, space: dict[str, Any], recipe: dict[str, Any], src: str,
                 folder: Path) -> list[dict[str, Any]]:
    """The points as the searcher samples them (factors of recipe-relative keys resolved at
    load made absolute; paths resolved against the space file's `folder`), each checked:
    a mapping of searched keys to values the space draws. One line naming the point and key
    for anything else."""
    if not isinstance(points, list):
        raise UserInputError(f"expected a list of mappings (key: value), got "
                             f"{describe_value(points)}", source=src, key=KEY)
    searched = searched_keys_of(space)
    resolved_at_load = {k: v["recipe_value"] for k, v in (recipe.get("relative") or {}).items()
                        if "recipe_value" in v}
    checked = []
    for index, point in enumerate(points):
        where = f"{KEY}[{index}]"
        if not isinstance(point, dict) or not point:
            raise UserInputError(f"expected a non-empty mapping of searched keys to values, got "
                                 f"{describe_value(point)}", source=src, key=where)
        values: dict[str, Any] = {}
        for key, value in point.items():
            if key not in searched:
                shown = ", ".join(searched) or "none"
                raise UserInputError(f"not a searched key of the space (searched: {shown})",
                                     source=src, key=f"{where}.{key}")
            values[key] = _space_value(value, space[key], resolved_at_load.get(key), folder)
            if not fits(values[key], space[key]):
                factor = " (a factor of the recipe's value)" if key in resolved_at_load else ""
                raise UserInputError(f"{format_value(value)}{factor} is not a value of "
                                     f"{describe_distribution(space[key])}", source=src,
                                     key=f"{where}.{key}")
        checked.append(values)
    return checked


def _space_value(value: Any, entry: dict[str, Any], recipe_value: float | None,
                 folder: Path) -> Any:
    """`value` in the terms of the space `entry`: scaled by a recipe value resolved at load,
    or, for a path among the choices, resolved against the space file's folder."""
    if recipe_value is not None and isinstance(value, int | float) \
            and not isinstance(value, bool):
        return float(f"{value * recipe_value:.12g}")
    if isinstance(value, str) and not fits(value, entry):
        candidate = (folder / value).expanduser().resolve()
        if candidate.exists() and fits(str(candidate), entry):
            return str(candidate)
    return copy.deepcopy(value)


def enqueue_points(study: Any, points: list[dict[str, Any]]) -> int:
    """Enqueue `points` in an Optuna study, in order, skipping any it already holds; how many
    were new."""
    before = len(study.get_trials(deepcopy=False))
    for point in points:
        study.enqueue_trial(point, skip_if_exists=True)
    return len(study.get_trials(deepcopy=False)) - before


TOP_LEVEL_KEYS = ("experiment", "base", "base_overrides", "space")


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
            raise UserInputError(f"unknown top-level key (known: {', '.join(TOP_LEVEL_KEYS)})",
                                 source=src, key=str(key))
    folder = path.resolve().parent
    space, relative = split_relative(raw.get("space"), src)
    space = parse_space(space, src, folder)
    base, base_source = _load_base(raw.get("base"), raw.get("base_overrides"), src, folder)
    base = drop_excluded(base, space.keys())
    # the rest first: the recipe is read from the base with the space's fixed values
    _validate_space_values(base, {k: v for k, v in space.items() if k not in relative}, src)
    space, recipe, resolved = resolve_relative(space, relative, base, _overridden(raw, src),
                                               src)
    for absolute in resolved:  # the resolved ranges, as absolute values (one per model)
        _validate_space_values(base, absolute, src)
    experiment = experiment_with_overrides(raw.get("experiment"), overrides, src)
    spec = build_spec(experiment, base, space, path, base_source)
    points = check_points(spec.searcher.points_to_evaluate, space, recipe, src, folder)
    if len(points) > spec.num_samples:
        raise UserInputError(f"{len(points)} points to evaluate, but the search runs "
                             f"{spec.num_samples} trials (num_samples)", source=src,
                             key="experiment.searcher.points_to_evaluate")
    searcher = dataclasses.replace(spec.searcher, points_to_evaluate=points)
    return dataclasses.replace(spec, recipe=recipe, searcher=searcher)


def _overridden(raw: dict[str, Any], src: str) -> set[str]:
    """The dotted keys the file's `base_overrides` sets (already checked by `_load_base`)."""
    overrides = as_mapping(raw.get("base_overrides"), src, "base_overrides")
    return set(_flatten_overrides(overrides, src)) if overrides else set()


def _validated(raw: dict[str, Any], src: str, key_prefix: str) -> None:
    """Validate a run-config dict; an error names the space file and `<key_prefix>.<key>`."""
    try:
        run_config_from_dict(raw)
    except UserInputError as exc:
        raise exc.relocated(src, key_prefix) from None


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
            raise UserInputError(f"file not found: {base_path}", source=src, key="base")
        raw = run_config_to_dict(load_run_config(base_path))  # its own errors name its file
        base_source = str(base_path)
    elif isinstance(base, dict):
        raw = copy.deepcopy(base)
        _validated(raw, src, "base")
        base_source = "inline"
    else:
        raise UserInputError(f"expected a path or a mapping, got {describe_value(base)}",
                             source=src, key="base")
    overrides = as_mapping(overrides, src, "base_overrides")
    if overrides:
        flat = _flatten_overrides(overrides, src, sections_set=_sections_set(raw))
        raw = drop_excluded(raw, flat.keys())
        raw = apply_overrides(raw, flat)
        _validated(raw, src, "base_overrides")
    # A base file's paths are absolute already; inline and override paths are relative to
    # the space file.
    cfg = resolve_paths(run_config_from_dict(raw, src), folder)
    return run_config_to_dict(cfg), base_source


def _sections_set(raw: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted keys of the mappings `raw` has (`training_args`, `data.synthetic`, ...)."""
    found: set[str] = set()
    for key, value in raw.items():
        if isinstance(value, dict):
            found.add(prefix + key)
            found |= _sections_set(value, f"{prefix}{key}.")
    return found


def _flatten_overrides(overrides: dict, src: str, prefix: str = "",
                       sections_set: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """Nested and dotted override keys -> {dotted leaf key: value}.

    Mappings are merged key by key where the run config has a section (a dataclass, or a free
    mapping such as `training_args` and `model.config_overrides`); anything else is replaced.
    An empty mapping turns on an optional section the base leaves unset (`ema: {}`: averaged
    weights with their defaults) and changes nothing in one it has.
    """
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if not isinstance(key, str) or not key:
            raise UserInputError("keys must be non-empty strings", source=src,
                                 key=f"base_overrides.{prefix}{key}")
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and is_section(dotted):
            if not value and dotted not in sections_set:
                flat[dotted] = {}
            flat.update(_flatten_overrides(value, src, dotted + ".", sections_set))
        else:
            flat[dotted] = value
    return flat


def drop_excluded(raw: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """Remove from `raw` the counterparts of keys being set (model.preset vs checkpoint...)."""
    keys = list(keys)
    raw = copy.deepcopy(raw)
    for side_a, side_b in EXCLUSIVE_KEYS:
        for mine, other in ((side_a, side_b), (side_b, side_a)):
            if touches(keys, mine) and not touches(keys, other):
                for dotted in other:
                    _pop_dotted(raw, dotted)
    return raw


def _pop_dotted(raw: dict[str, Any], dotted: str) -> None:
    node: Any = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def _validate_space_values(base: dict[str, Any], space: dict[str, Any], src: str) -> None:
    """Build and validate the run config with each fixed value, every choice and both ends."""
    fixed = fixed_values_of(space)
    for key, value in fixed.items():
        _check_value(base, {key: value}, src, key, value)
    first: dict[str, Any] = {}
    for key in searched_keys_of(space):
        values = candidate_values(space[key])
        for value in values:
            _check_value(base, {**fixed, key: value}, src, key, value)
        first[key] = values[0]
    try:
        run_config_from_dict(apply_overrides(base, {**fixed, **first}))
    except UserInputError as exc:
        raise UserInputError("the first values of the space together give an invalid run "
                             f"config ({exc.key or 'run config'}: {exc.problem})", source=src,
                             key="space") from None


def _check_value(base: dict, params: dict, src: str, key: str, value: Any) -> None:
    """Validate `base` with `params` set; blame the space key the error is about, if any."""
    try:
        run_config_from_dict(apply_overrides(base, params))
    except UserInputError as exc:
        culprit = next((k for k in params if exc.key == k
                        or (exc.key or "").startswith(k + ".")), key)
        value = params.get(culprit, value)
        detail = exc.problem if exc.key in (None, culprit, "training_args") else \
            f"{exc.key}: {exc.problem}"
        raise UserInputError(f"value {value!r} is not valid here: {detail}", source=src,
                             key=f"space.{culprit}") from None


def to_tune_param_space(spec: SearchSpec) -> dict:
    """Flat `{dotted_key: tune domain or fixed value}` for `Tuner(param_space=...)`.

    Our integer bounds are inclusive; `tune.randint` / `tune.lograndint` exclude the upper
    bound, so they get `high + 1` (Ray's Optuna converter subtracts it again). `qrandint` with
    q = 1 becomes `randint`, since Ray treats its upper bound inconsistently for q = 1.
    """
    from ray import tune

    params: dict[str, Any] = {}
    for key, value in spec.space.items():
        params[key] = tune_domain(tune, value) if is_distribution(value) else copy.deepcopy(
            value)
    return params


def tune_domain(tune: Any, dist: dict) -> Any:
    """One of our distributions as a `ray.tune` domain (`tune` is the imported module)."""
    name, args = next(iter(dist.items()))
    if name == "choice":
        return tune.choice(copy.deepcopy(args))
    if name == "randint" or (name == "qrandint" and args[2] == 1):
        return tune.randint(args[0], args[1] + 1)
    if name == "lograndint":
        return tune.lograndint(args[0], args[1] + 1)
    return getattr(tune, name)(*args)
