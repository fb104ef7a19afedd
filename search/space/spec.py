"""Search-space files -> validated `SearchSpec` (README "Search-space files"), its own file
`<experiment>/search_spec.yaml` (read back by the export) and its Tune `param_space`:

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
    max_t: 1500                  # cap per trial; default: estimated (required for COCO files)
  searcher:                      # Optuna
    sampler: tpe                 # tpe (default) | gp | random | qmc | cmaes (search.space.samplers)
    sampler_options: {}          # the sampler's own options, e.g. {multivariate: true}
    seed: 0                      # default 0; null = a different search each time
    n_startup_trials: 4          # random trials first; default min(10, ceil(num_samples/2))
    points_to_evaluate:          # tried first, in order (search.space.spec)
      - {iou_loss: ciou}         # keys left out are sampled
  resources: {cpus_per_trial: 1, gpus_per_trial: 0}   # gpus may be fractional: 0.5 = 2 per GPU
  # or a data-parallel trial (Ray Train, one batch per worker a step; not with the two above):
  # resources: {workers_per_trial: 2, cpus_per_worker: 1, gpus_per_worker: 0}
  max_failures: 0                # retries of an errored trial from its last checkpoint (-1: no cap)
  finalists: {top: 3, seeds: 3}  # optional: the 3 best configurations re-run with 3 seeds each
base: ../configs/run.yaml        # path (relative to THIS file) or mapping; default: embedded
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

Distributions: `search.space.distributions`; ranges relative to the recipe:
`search.space.relative_ranges`. Everything is checked before Ray starts (every choice and both
ends of every range built into a run config), in one line naming the file and the dotted key.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from detr_core.config.metric_names import DEFAULT_METRIC, SELECTABLE_EVAL_METRICS, natural_mode
from detr_core.config.run_config import (
    DEFAULT_CONFIG_PATH,
    EXCLUSIVE_KEYS,
    PATH_KEYS,
    Section,
    apply_overrides,
    get_dotted,
    is_section,
    key_type,
    load_run_config,
    pop_dotted,
    resolve_path_value,
    resolve_paths,
    run_config_from_dict,
    run_config_to_dict,
    set_dotted,
    strip_optional,
    touches,
    validated,
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
    log_scale_keys_of,
    numeric_kinds,
    searched_keys_of,
)
from search.space.relative_ranges import resolve_relative, split_relative
from search.space.samplers import DEFAULT_SAMPLER, check_sampler
from search.store.layout import SPEC_FILE
from search.store.storage import ExperimentPath, write_text_atomic


class SchedulerSpec(Section):
    """`experiment.scheduler`: ASHA, budgets in optimizer steps."""

    grace_period: int | None = Field(None, ge=1)
    reduction_factor: float = Field(3.0, gt=1, allow_inf_nan=False)
    max_t: int | None = Field(None, ge=1)

    def rungs(self) -> list[float]:
        return asha_rungs(self.grace_period, self.reduction_factor, self.max_t)


class SearcherSpec(Section):
    """`experiment.searcher`: Optuna."""

    seed: int | None = 0
    n_startup_trials: int | None = Field(None, ge=0)
    points_to_evaluate: Any = None
    sampler: str = DEFAULT_SAMPLER
    sampler_options: Any = None


#: `experiment.resources` keys of a one-process trial, and of a data-parallel one.
TRIAL_RESOURCE_KEYS = ("cpus_per_trial", "gpus_per_trial")
WORKER_RESOURCE_KEYS = ("workers_per_trial", "cpus_per_worker", "gpus_per_worker")


class ResourceSpec(Section):
    """`experiment.resources`: what one trial reserves (a GPU fraction packs trials). Either
    one process (`cpus_per_trial`, `gpus_per_trial`) or a Ray Train data-parallel job of
    `workers_per_trial` workers of `cpus_per_worker` / `gpus_per_worker` each; once validated,
    both forms hold both: the `*_per_trial` values are always the totals a trial reserves
    (workers x per worker), a one-process trial is one worker."""

    cpus_per_trial: float = Field(1.0, gt=0, allow_inf_nan=False)
    gpus_per_trial: float = Field(0.0, ge=0, allow_inf_nan=False)
    workers_per_trial: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0, allow_inf_nan=False)
    gpus_per_worker: float = Field(0.0, ge=0, allow_inf_nan=False)

    @field_validator("cpus_per_trial", "gpus_per_trial", "cpus_per_worker", "gpus_per_worker")
    @classmethod
    def _whole_above_one(cls, value: float) -> float:
        if value > 1 and not value.is_integer():
            raise UserInputError(f"above 1 it must be a whole number (Ray's rule), got {value:g}")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> ResourceSpec:
        given = self.model_fields_set
        old = [key for key in TRIAL_RESOURCE_KEYS if key in given]
        if old and given.intersection(WORKER_RESOURCE_KEYS):
            # the key is the old one, so a CLI override's error names its flag (read_experiment)
            raise UserInputError(
                "give either cpus_per_trial / gpus_per_trial (one process a trial) or "
                "workers_per_trial / cpus_per_worker / gpus_per_worker (a data-parallel "
                "trial), not both", key=old[0])
        workers = self.workers_per_trial
        if workers > 1 and self.gpus_per_worker not in (0, 1):
            raise UserInputError(
                f"with {workers} workers a trial each worker has 0 or 1 GPU (a rank trains on "
                f"one device; NCCL cannot put two ranks of one job on one), got "
                f"{self.gpus_per_worker:g}", key="gpus_per_worker")
        if old or not given.intersection(WORKER_RESOURCE_KEYS):  # one process: one worker
            totals = {"cpus_per_worker": self.cpus_per_trial,
                      "gpus_per_worker": self.gpus_per_trial}
        else:
            totals = {"cpus_per_trial": workers * self.cpus_per_worker,
                      "gpus_per_trial": workers * self.gpus_per_worker}
        for key, value in totals.items():  # not counted as given (model_fields_set)
            self.__dict__[key] = value
        return self

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        values = self.__dict__  # pickled before workers (an older tuner.pkl): one worker
        values.setdefault("workers_per_trial", 1)
        values.setdefault("cpus_per_worker", values["cpus_per_trial"])
        values.setdefault("gpus_per_worker", values["gpus_per_trial"])


class FinalistsSpec(Section):
    """`experiment.finalists` (`search.results.finalists`); off when `top` is 0 or absent."""

    top: int = Field(3, ge=0)
    seeds: int = Field(3, ge=1)

    @property
    def on(self) -> bool:
        return self.top > 0 and self.seeds > 0


NO_FINALISTS = FinalistsSpec.model_construct(top=0, seeds=0)


class ExperimentSection(Section):
    """The `experiment:` section of a search-space file; every key optional."""

    name: str | None = None
    metric: str = DEFAULT_METRIC
    mode: Literal["min", "max"] | None = None
    num_samples: int = Field(8, ge=1)
    max_concurrent: int | None = Field(None, ge=1)
    max_failures: int = Field(0, ge=-1)
    scheduler: SchedulerSpec = SchedulerSpec()
    searcher: SearcherSpec = SearcherSpec()
    resources: ResourceSpec = ResourceSpec()
    finalists: FinalistsSpec | None = None

    @field_validator("scheduler", "searcher", "resources", "finalists", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return {} if value is None else value  # `scheduler:` with nothing under it

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME_RE.match(value):
            raise UserInputError("must be a folder name (letters, digits, . _ -), got "
                                 f"{describe_value(value)}")
        return value

    @field_validator("metric")
    @classmethod
    def _reported(cls, value: str) -> str:
        if value not in REPORTED_METRICS:
            raise UserInputError(f"{value!r} is not reported by trials (one of: "
                                 f"{', '.join(REPORTED_METRICS)})")
        return value


@dataclass
class SearchSpec:
    """A validated search-space file."""

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
    #: the recipe's four keys: their sources and resolved ranges (`search.space.relative_ranges`)
    recipe: dict = field(default_factory=dict)
    finalists: FinalistsSpec = field(default_factory=lambda: NO_FINALISTS)

    def searched_keys(self) -> list[str]:
        return searched_keys_of(self.space)

    def fixed_values(self) -> dict:
        return fixed_values_of(self.space)

    def log_scale_keys(self) -> set[str]:
        return log_scale_keys_of(self.space)

    def to_yaml_dict(self) -> dict:
        """What `<experiment>/search_spec.yaml` holds (see `from_yaml_dict`)."""
        sched, searcher, res = self.scheduler, self.searcher, self.resources
        return {
            "name": self.name, "source": str(self.source), "base_source": self.base_source,
            "experiment": {
                "metric": self.metric, "mode": self.mode, "num_samples": self.num_samples,
                "max_concurrent": self.max_concurrent, "max_t": sched.max_t,
                "grace_period": sched.grace_period, "reduction_factor": sched.reduction_factor,
                "searcher_seed": searcher.seed, "n_startup_trials": searcher.n_startup_trials,
                "points_to_evaluate": copy.deepcopy(searcher.points_to_evaluate),
                "sampler": searcher.sampler,
                "sampler_options": copy.deepcopy(searcher.sampler_options),
                "cpus_per_trial": res.cpus_per_trial, "gpus_per_trial": res.gpus_per_trial,
                "workers_per_trial": res.workers_per_trial,
                "cpus_per_worker": res.cpus_per_worker, "gpus_per_worker": res.gpus_per_worker,
                "max_failures": self.max_failures, "finalists_top": self.finalists.top,
                "finalists_seeds": self.finalists.seeds,
            },
            "base": copy.deepcopy(self.base), "space": copy.deepcopy(self.space),
            "recipe": copy.deepcopy(self.recipe),
        }

    @classmethod
    def from_yaml_dict(cls, raw: dict[str, Any], source: str | Path) -> SearchSpec:
        """The spec `to_yaml_dict` wrote; `UserInputError` if it is not one."""
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
                scheduler=SchedulerSpec.model_construct(
                    grace_period=int(exp["grace_period"]),
                    reduction_factor=float(exp["reduction_factor"]), max_t=int(exp["max_t"])),
                searcher=SearcherSpec.model_construct(
                    seed=exp.get("searcher_seed"), n_startup_trials=int(exp["n_startup_trials"]),
                    points_to_evaluate=list(exp.get("points_to_evaluate") or []),
                    sampler=str(exp.get("sampler", "tpe")),  # older folders: TPE
                    sampler_options=dict(exp.get("sampler_options") or {})),
                resources=_resources_of(exp),
                max_failures=int(exp.get("max_failures", 0)), base=base, space=space,
                source=Path(str(raw.get("source", source))),
                base_source=str(raw.get("base_source", "embedded default")), recipe=recipe,
                finalists=FinalistsSpec.model_construct(
                    top=int(exp.get("finalists_top", 0)), seeds=int(exp.get("finalists_seeds", 0))),
            )
        except KeyError as exc:
            raise UserInputError("missing (written by search/run.py; was the file edited?)",
                                 source=source, key=f"experiment.{exc.args[0]}") from None
        except (TypeError, ValueError) as exc:
            raise UserInputError(f"not a search spec: {exc}", source=source) from None


def _resources_of(exp: dict[str, Any]) -> ResourceSpec:
    """`experiment.resources` as `to_yaml_dict` wrote it; older folders have no worker keys
    (one process a trial: one worker holding all of it)."""
    cpus, gpus = float(exp["cpus_per_trial"]), float(exp["gpus_per_trial"])
    return ResourceSpec.model_construct(
        cpus_per_trial=cpus, gpus_per_trial=gpus,
        workers_per_trial=int(exp.get("workers_per_trial", 1)),
        cpus_per_worker=float(exp.get("cpus_per_worker", cpus)),
        gpus_per_worker=float(exp.get("gpus_per_worker", gpus)))


def write_spec_file(spec: SearchSpec, experiment_dir: ExperimentPath) -> ExperimentPath:
    text = dumps_yaml(spec.to_yaml_dict(),
                      header="Written by search/run.py: the resolved search (read by export.py).")
    return write_text_atomic(experiment_dir / SPEC_FILE, text)


def read_spec_file(experiment_dir: ExperimentPath) -> SearchSpec:
    path = experiment_dir / SPEC_FILE
    if not path.is_file():
        raise UserInputError(f"not a search experiment folder (no {SPEC_FILE}; give the "
                             "folder `search/run.py` wrote, e.g. results/<name>)",
                             source=experiment_dir)
    return SearchSpec.from_yaml_dict(parse_yaml_mapping(path.read_text(encoding="utf-8"), path),
                                     path)


REPORTED_METRICS = SELECTABLE_EVAL_METRICS
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: `load_search_spec(overrides=...)` key -> (dotted key in `experiment:`, its CLI flag).
OVERRIDE_KEYS: dict[str, tuple[str, str]] = {
    "name": ("name", "--name"), "num_samples": ("num_samples", "--num-samples"),
    "max_concurrent": ("max_concurrent", "--max-concurrent"),
    "cpus_per_trial": ("resources.cpus_per_trial", "--cpus-per-trial"),
    "gpus_per_trial": ("resources.gpus_per_trial", "--gpus-per-trial"),
    "seed": ("searcher.seed", "--seed"), "sampler": ("searcher.sampler", "--sampler"),
    "max_failures": ("max_failures", "--max-failures"),
    "finalists_top": ("finalists.top", "--finalists"),
    "finalists_seeds": ("finalists.seeds", "--finalist-seeds"),
}


def as_mapping(value: Any, src: str, key: str) -> dict:
    """`value` as a dict; None (an empty YAML section) is {}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserInputError(f"expected a mapping, got {describe_value(value)}", source=src,
                             key=key)
    return value


def read_experiment(raw: Any, overrides: dict | None, src: str) -> ExperimentSection:
    """`experiment:` with the CLI's overrides, validated; an error names the flag a value came
    from (`experiment.num_samples (from --num-samples)`)."""
    experiment = copy.deepcopy(as_mapping(raw, src, "experiment"))
    origin: dict[str, str] = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        dotted, flag = OVERRIDE_KEYS[key]
        set_dotted(experiment, dotted, value)
        origin[dotted] = flag
    try:
        return validated(ExperimentSection, experiment, src, key_prefix="experiment")
    except UserInputError as exc:
        flag = origin.get((exc.key or "").removeprefix("experiment."))
        if flag is None:
            raise
        raise UserInputError(exc.problem, source=src, key=f"{exc.key} (from {flag})") from None


def build_spec(experiment: ExperimentSection, base: dict[str, Any], space: dict[str, Any],
               path: Path, base_source: str) -> SearchSpec:
    """The `SearchSpec`, with the defaults that depend on the base and the space filled in."""
    src, searcher = str(path), experiment.searcher
    mode = experiment.mode or natural_mode(experiment.metric)
    startup = searcher.n_startup_trials
    if startup is None:  # half the trials, at most 10
        startup = min(10, max(1, math.ceil(experiment.num_samples / 2)))
    sampler, options = check_sampler(searcher.sampler, searcher.sampler_options, searcher.seed,
                                     startup, src)
    searcher = searcher.model_copy(update={
        "n_startup_trials": startup, "sampler": sampler, "sampler_options": options,
        "points_to_evaluate": searcher.points_to_evaluate or []})  # check_points checks them
    # the Trainer's best step chosen by the search's metric, the one the export keeps
    base = apply_overrides(base, {"training_args.metric_for_best_model": experiment.metric,
                                  "training_args.greater_is_better": mode == "max"})
    finalists = experiment.finalists
    return SearchSpec(
        name=experiment.name or path.stem, metric=experiment.metric, mode=mode,
        num_samples=experiment.num_samples, max_concurrent=experiment.max_concurrent,
        scheduler=_scheduler(experiment.scheduler, base, space, src,
                             experiment.resources.workers_per_trial), searcher=searcher,
        resources=experiment.resources, max_failures=experiment.max_failures, base=base,
        space=space, source=path, base_source=base_source,
        finalists=finalists if finalists is not None and finalists.top else NO_FINALISTS)


def _scheduler(scheduler: SchedulerSpec, base: dict[str, Any], space: dict[str, Any],
               src: str, workers: int = 1) -> SchedulerSpec:
    max_t = scheduler.max_t
    if max_t is None:
        max_t = estimate_max_steps(base, space, workers)
        if max_t is None:
            raise UserInputError("required here: give the optimizer steps of the longest trial "
                                 "(the base trains on COCO files, not read here)", source=src,
                                 key="experiment.scheduler.max_t")
    grace = scheduler.grace_period
    if grace is None:
        grace = min(first_eval_step(base, space, max_t), max_t)
    if max_t < grace:
        raise UserInputError(f"must be >= grace_period ({grace}), got {max_t}", source=src,
                             key="experiment.scheduler.max_t")
    return scheduler.model_copy(update={"max_t": max_t, "grace_period": grace})


def parse_space(space: Any, src: str, folder: Path) -> dict[str, Any]:
    """`space:` checked, path values made absolute."""
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
    for key in result:  # `model` with `model.image_size`: one would overwrite the other
        for other in result:
            if other.startswith(key + "."):
                raise UserInputError(f"overlaps `space.{key}`: give one of them", source=src,
                                     key=f"space.{other}")
    for side_a, side_b in EXCLUSIVE_KEYS:
        in_a = [k for k in result if touches([k], side_a)]
        in_b = [k for k in result if touches([k], side_b)]
        if in_a and in_b:
            raise UserInputError(f"excludes `space.{in_a[0]}`: give one of them", source=src,
                                 key=f"space.{in_b[0]}")
    if not searched_keys_of(result):
        raise UserInputError("no key has a distribution: nothing to search", source=src,
                             key="space")
    return result


def _parse_entry(key: str, value: Any, folder: Path) -> Any:
    """One `key: value` of the space, checked (only the error's problem is used)."""
    if touches([key], ("data",)):  # trials train on the data prepared once (search.trial.node_data)
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
    """Path strings within a value set at `key` made absolute."""
    for path_key in PATH_KEYS:
        if path_key == key:
            return resolve_path_value(path_key, value, folder)
        inner = path_key[len(key) + 1:]
        if path_key.startswith(key + ".") and get_dotted(value, inner) is not None:
            set_dotted(value, inner, resolve_path_value(path_key, get_dotted(value, inner),
                                                        folder))
    return value


KEY = "experiment.searcher.points_to_evaluate"


def check_points(points: Any, space: dict[str, Any], recipe: dict[str, Any], src: str,
                 folder: Path) -> list[dict[str, Any]]:
    """The points in the searcher's terms (`_space_value`), each checked against the space."""
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
    """`value` in the space's terms: a factor times the recipe value, or a path made absolute."""
    if recipe_value is not None and isinstance(value, int | float) and not isinstance(value, bool):
        return float(f"{value * recipe_value:.12g}")
    if isinstance(value, str) and not fits(value, entry):
        candidate = (folder / value).expanduser().resolve()
        if candidate.exists() and fits(str(candidate), entry):
            return str(candidate)
    return copy.deepcopy(value)


def enqueue_points(study: Any, points: list[dict[str, Any]]) -> int:
    """Enqueue `points` in an Optuna study, skipping any it holds; how many were new."""
    before = len(study.get_trials(deepcopy=False))
    for point in points:
        study.enqueue_trial(point, skip_if_exists=True)
    return len(study.get_trials(deepcopy=False)) - before


TOP_LEVEL_KEYS = ("experiment", "base", "base_overrides", "space")


def load_search_spec(path: str | Path, overrides: dict | None = None) -> SearchSpec:
    """Read, validate and resolve a search-space file; `overrides` (`OVERRIDE_KEYS`, None: not
    given) come from the CLI. Raises `UserInputError` (`<file>: <key>: <problem>`)."""
    path = Path(path)
    src, raw = str(path), load_yaml_mapping(path)
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
    overridden = _flatten_overrides(as_mapping(raw.get("base_overrides"), src, "base_overrides"),
                                    src)
    space, recipe, resolved = resolve_relative(space, relative, base, set(overridden), src)
    for absolute in resolved:  # the resolved ranges, as absolute values (one per model)
        _validate_space_values(base, absolute, src)
    experiment = read_experiment(raw.get("experiment"), overrides, src)
    spec = build_spec(experiment, base, space, path, base_source)
    points = check_points(spec.searcher.points_to_evaluate, space, recipe, src, folder)
    if len(points) > spec.num_samples:
        raise UserInputError(f"{len(points)} points to evaluate, but the search runs "
                             f"{spec.num_samples} trials (num_samples)", source=src,
                             key="experiment.searcher.points_to_evaluate")
    searcher = spec.searcher.model_copy(update={"points_to_evaluate": points})
    return replace(spec, recipe=recipe, searcher=searcher)


def _validated(raw: dict[str, Any], src: str, key_prefix: str) -> None:
    try:
        run_config_from_dict(raw)
    except UserInputError as exc:
        raise exc.relocated(src, key_prefix) from None


def _load_base(base: Any, overrides: Any, src: str, folder: Path) -> tuple[dict[str, Any], str]:
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
        flat = _flatten_overrides(overrides, src, base=raw)
        raw = drop_excluded(raw, flat.keys())
        raw = apply_overrides(raw, flat)
        _validated(raw, src, "base_overrides")
    # a base file's paths are absolute already; inline and override ones relative to src
    cfg = resolve_paths(run_config_from_dict(raw, src), folder)
    return run_config_to_dict(cfg), base_source


def _flatten_overrides(overrides: dict, src: str, prefix: str = "",
                       base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested and dotted override keys -> {dotted leaf key: value}, merged key by key into the
    run config's sections and free mappings; an empty mapping turns on an optional section
    `base` leaves unset (`ema: {}`) and changes nothing in one it has."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if not isinstance(key, str) or not key:
            raise UserInputError("keys must be non-empty strings", source=src,
                                 key=f"base_overrides.{prefix}{key}")
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and is_section(dotted):
            if not value and not isinstance(get_dotted(base, dotted), dict):
                flat[dotted] = {}
            flat.update(_flatten_overrides(value, src, dotted + ".", base))
        else:
            flat[dotted] = value
    return flat


def drop_excluded(raw: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """A copy of `raw` without the exclusive counterparts of `keys`."""
    keys = list(keys)
    raw = copy.deepcopy(raw)
    for side_a, side_b in EXCLUSIVE_KEYS:
        for mine, other in ((side_a, side_b), (side_b, side_a)):
            if touches(keys, mine) and not touches(keys, other):
                for dotted in other:
                    pop_dotted(raw, dotted)
    return raw


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
    """Flat `{dotted_key: tune domain or fixed value}` for `Tuner(param_space=...)`."""
    from ray import tune

    return {key: tune_domain(tune, value) if is_distribution(value) else copy.deepcopy(value)
            for key, value in spec.space.items()}


def tune_domain(tune: Any, dist: dict) -> Any:
    """Our (inclusive) integer bounds get `high + 1`: tune's randint excludes it, and Ray's
    Optuna converter subtracts it again. `qrandint` with q = 1 is `randint` (Ray treats its
    upper bound inconsistently)."""
    name, args = next(iter(dist.items()))
    if name == "choice":
        return tune.choice(copy.deepcopy(args))
    if name == "randint" or (name == "qrandint" and args[2] == 1):
        return tune.randint(args[0], args[1] + 1)
    if name == "lograndint":
        return tune.lograndint(args[0], args[1] + 1)
    return getattr(tune, name)(*args)
