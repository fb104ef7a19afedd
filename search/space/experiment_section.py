"""The `experiment:` section of a search-space file: name, metric, trials, ASHA, TPE, resources.

Every setting is read with its type and range checked, CLI flags merged in first (an error
then names the flag), and defaults filled in, some from the base run config (ASHA's budget
and first rung, see `search.space.budget`). `build_spec` returns the finished `SearchSpec`.
"""

from __future__ import annotations

import copy
import math
import re
import typing
from pathlib import Path
from typing import Any

from detr_core.config.metric_names import DEFAULT_METRIC, SELECTABLE_EVAL_METRICS, natural_mode
from detr_core.files.errors import UserInputError, describe_value
from search.space.budget import estimate_max_steps, first_eval_step
from search.space.distributions import is_number
from search.space.samplers import DEFAULT_SAMPLER, check_sampler
from search.space.spec import (
    FinalistsSpec,
    ResourceSpec,
    SchedulerSpec,
    SearcherSpec,
    SearchSpec,
)

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
