"""A trial's values and run config: the one merge the trainable trains with and the export writes.

Tune hands a trial its config as a FLAT dict keyed by dotted run-config names
(`training_args.learning_rate`); Ray nests keys on "/" only, so dots survive `OptunaSearch`
into each trial's `config` and `params.json`. `trial_values` is what the trial really trains
with: the space's fixed values, then the sampled ones rounded to their q (Optuna cannot
quantize a log-scale float, and its float steps drift: `0.30000000000000004`), then, where
the model is searched, recipe-relative factors made absolute against the trial's own model
(`search.space.per_trial_recipes`: `params.json` holds the factor, the run the value).
`trial_run_config` sets them on the base run config, with the trial's thread count
(`trial_threads`): float results depend on how many threads reduce a sum, so a bit-exact rerun
of a trial needs the same number. The trainable, `best_config.yaml`, `trials.csv` and the
report all go through these functions, so they agree field for field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detr_core.config.run_config import apply_overrides
from search.space.distributions import fixed_values_of, quantize_params
from search.space.per_trial_recipes import absolute_values


def trial_values(space: Mapping[str, Any], params: Mapping[str, Any],
                 base: Mapping[str, Any] | None = None,
                 recipe: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The flat dotted values a trial trains with: fixed values, then sampled ones rounded,
    then (a search whose model is searched: `recipe` is its `SearchSpec.recipe`) each
    recipe-relative factor times the recipe of the trial's own model, against `base`."""
    values = {**fixed_values_of(dict(space)), **quantize_params(dict(space), dict(params))}
    return absolute_values(values, base, recipe)


def trial_threads(cpus_per_trial: float) -> int:
    """Torch threads of a trial: its whole CPUs, at least one."""
    return max(1, int(cpus_per_trial))


def trial_run_config(base: Mapping[str, Any], space: Mapping[str, Any],
                     params: Mapping[str, Any], threads: int | None = None,
                     recipe: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run-config dict of one trial: `base` with `trial_values(space, params, base,
    recipe)` set, and `num_threads` when the trial's thread count is given."""
    config = apply_overrides(dict(base), trial_values(space, params, base, recipe))
    if threads is not None:
        config["num_threads"] = threads
    return config
