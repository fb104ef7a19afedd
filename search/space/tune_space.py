"""The spec's space as Ray Tune domains: the flat `param_space` of the `Tuner`.

Keys stay the dotted run-config names (Ray nests on "/" only, so they reach each trial's
config unchanged); a plain value is passed through as a fixed value.
"""

from __future__ import annotations

import copy
from typing import Any

from search.space.distributions import is_distribution
from search.space.spec import SearchSpec


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
