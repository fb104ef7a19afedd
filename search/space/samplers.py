"""Which Optuna sampler proposes the trials: `experiment.searcher.sampler` and its options.

Each name is one of Optuna's samplers, built with any keyword argument of its constructor that
YAML can express, except `seed` and `n_startup_trials` (keys of `experiment.searcher`, so
`--seed` works for every sampler). It is built once when the space file loads, so a wrong option
is one line naming the key before Ray starts. The default (TPE) is measured
(`results/benchmarks/search_efficiency.md`).
"""

from __future__ import annotations

import importlib.util
import inspect
import typing
import warnings
from collections.abc import Mapping
from typing import Any

from detr_core.files.errors import UserInputError, describe_value

#: `sampler:` name -> the class in `optuna.samplers`
SAMPLERS = {"tpe": "TPESampler", "gp": "GPSampler", "random": "RandomSampler",
            "qmc": "QMCSampler", "cmaes": "CmaEsSampler"}
DEFAULT_SAMPLER = "tpe"
#: what a name stands for, for the plan's searcher line
LABELS = {"tpe": "TPE", "gp": "Gaussian process", "random": "random", "qmc": "quasi-Monte Carlo",
          "cmaes": "CMA-ES"}
#: packages a sampler imports only when it first samples (checked when the file loads)
NEEDS = {"cmaes": "cmaes", "gp": "scipy"}
#: constructor arguments set by other keys of `experiment.searcher`
SET_ELSEWHERE = {"seed": "experiment.searcher.seed",
                 "n_startup_trials": "experiment.searcher.n_startup_trials"}
#: constructor arguments that take a callable or a sampler: not expressible in YAML
NOT_FROM_YAML = ("gamma", "weights", "constraints_func", "independent_sampler",
                 "source_trials", "after_trial_strategy")


def sampler_class(name: str) -> type:
    """The Optuna class behind a `sampler:` name (`KeyError` for an unknown one)."""
    import optuna

    return getattr(optuna.samplers, SAMPLERS[name])


def sampler_options(name: str) -> list[str]:
    """The options `sampler_options:` may set for this sampler."""
    parameters = inspect.signature(sampler_class(name)).parameters
    return [p for p in parameters if p not in SET_ELSEWHERE and p not in NOT_FROM_YAML]


def build_sampler(name: str, options: Mapping[str, Any], seed: int | None,
                  n_startup_trials: int) -> Any:
    """The Optuna sampler, with `n_startup_trials` where it has random startup trials."""
    import optuna

    cls = sampler_class(name)
    kwargs = {**options, "seed": seed}
    if "n_startup_trials" in inspect.signature(cls).parameters:
        kwargs["n_startup_trials"] = n_startup_trials
    with warnings.catch_warnings():  # QMC and GP are "experimental": chosen knowingly here
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(**kwargs)


def check_sampler(name: Any, options: Any, seed: int | None, n_startup_trials: int,
                  source: str) -> tuple[str, dict[str, Any]]:
    """(name, options) checked by building the sampler once; `UserInputError` naming the key."""
    def error(problem: str, key: str = "experiment.searcher.sampler") -> UserInputError:
        return UserInputError(problem, source=source, key=key)

    if name not in SAMPLERS:
        raise error(f"unknown sampler {describe_value(name)} (known: {', '.join(SAMPLERS)})")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise error(f"expected a mapping, got {describe_value(options)}",
                    "experiment.searcher.sampler_options")
    package = NEEDS.get(name)
    if package and importlib.util.find_spec(package) is None:
        raise error(f"{name} needs the {package} package, which is not installed "
                    f"(pip install {package})")
    known = sampler_options(name)
    for option in options:
        key = f"experiment.searcher.sampler_options.{option}"
        if option in SET_ELSEWHERE:
            raise error(f"set it as {SET_ELSEWHERE[option]} (it applies to every sampler)", key)
        if option not in known:
            raise error(f"not an option of {name} ({SAMPLERS[name]} takes: "
                        f"{', '.join(known) or 'none'})", key)
        if problem := _type_problem(sampler_class(name), option, options[option]):
            raise error(problem, key)
    try:
        build_sampler(name, options, seed, n_startup_trials)
    except (TypeError, ValueError) as exc:
        raise error(f"{SAMPLERS[name]} refused the options: {' '.join(str(exc).split())}",
                    "experiment.searcher.sampler_options") from None
    return name, dict(options)


def _type_problem(cls: type, option: str, value: Any) -> str | None:
    """What is wrong with `value` for a plain scalar option (Optuna checks few types itself:
    `multivariate: "yes"` would pass as true); other options are left to the constructor."""
    annotation = inspect.signature(cls).parameters[option].annotation
    names = {"bool": bool, "int": int, "float": float, "str": str, "None": type(None)}
    if isinstance(annotation, str):  # Optuna's modules use postponed annotations
        parts = [part.strip() for part in annotation.split("|")]
        if not all(part in names for part in parts):
            return None
        allowed = {names[part] for part in parts}
    else:
        allowed = set(typing.get_args(annotation)) or {annotation}
    if value is None:
        return None if type(None) in allowed else f"expected a value, got {describe_value(value)}"
    scalars = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    wanted = [scalars[t] for t in scalars if t in allowed]
    if not wanted or len(wanted) != len(allowed - {type(None)}):
        return None  # not a plain scalar option
    # the types `value` passes as: an int is a float too, a bool is neither
    passes = ({bool} if isinstance(value, bool) else {int, float} if isinstance(value, int)
              else {float} if isinstance(value, float) else {str} if isinstance(value, str)
              else set())
    if passes & allowed:
        return None
    return f"expected {' or '.join(wanted)}, got {describe_value(value)}"


def describe_sampler(name: str, options: Mapping[str, Any]) -> str:
    """`Optuna TPE (multivariate=True)` for the plan."""
    label = f"Optuna {LABELS.get(name, name)}"
    if options:
        label += " (" + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")"
    return label
