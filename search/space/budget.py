"""How long trials run, in optimizer steps: ASHA's rungs and the defaults that depend on the base.

`max_t` defaults to the steps of the longest trial the space can produce, `grace_period` to the
first evaluation (`logging_steps`). Pure functions: no Ray, no files.
"""

from __future__ import annotations

import math
from typing import Any

from search.space.distributions import candidate_values, is_distribution, is_number


def asha_rungs(grace_period: float, reduction_factor: float, max_t: float) -> list[float]:
    """Milestones of Ray's ASHA bracket 0: `grace * rf**k` for k while it stays <= max_t."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [grace_period * reduction_factor**k for k in range(count)]


def default_max_concurrent(cpus_per_trial: float, gpus_per_trial: float, num_samples: int,
                           cluster_cpus: float, cluster_gpus: float) -> int:
    """Trials that fit the cluster at once (what `max_concurrent: null` means), at least 1."""
    fits = math.floor(cluster_cpus / cpus_per_trial + 1e-9)
    if gpus_per_trial > 0:
        fits = min(fits, math.floor(cluster_gpus / gpus_per_trial + 1e-9))
    return max(1, min(fits, num_samples))


def training_arg_values(base: dict[str, Any], space: dict[str, Any], key: str) -> list[float]:
    """Numbers `training_args.<key>` can take: searched candidates, else the fixed or base value,
    else detr_core's default for the field."""
    from detr_core.config.training_args import training_arg_default

    dotted = f"training_args.{key}"
    if dotted in space:
        value = space[dotted]
        values = candidate_values(value) if is_distribution(value) else [value]
    else:
        args = base.get("training_args", {})
        values = [args[key] if key in args else training_arg_default(key)]
    return [v for v in values if is_number(v)]


def estimate_max_steps(base: dict[str, Any], space: dict[str, Any],
                       workers: int = 1) -> int | None:
    """Optimizer steps of the longest trial: `max_steps`, else (synthetic data) epochs x
    ceil(images / (batch x workers)) / accumulation at the longest end of each range; None for
    COCO data. `per_device_train_batch_size` is per worker (the HF Trainer's meaning): a step of
    a data-parallel trial takes batch x workers x accumulation images."""
    max_steps = training_arg_values(base, space, "max_steps")
    if max_steps and max(max_steps) > 0:
        return int(max(max_steps))
    synthetic = base.get("data", {}).get("synthetic")
    if synthetic is None:  # `data.*` is never searched (search.space.spec)
        return None
    batch = min(training_arg_values(base, space, "per_device_train_batch_size"))
    epochs = max(training_arg_values(base, space, "num_train_epochs"))
    accumulation = min(training_arg_values(base, space, "gradient_accumulation_steps"))
    per_epoch = (math.ceil(synthetic["num_train"] / (max(1, batch) * max(1, workers)))
                 // max(1, int(accumulation)))
    return max(1, math.ceil(epochs * max(1, per_epoch)))


def first_eval_step(base: dict[str, Any], space: dict[str, Any], max_t: int) -> int:
    """Step of the first evaluation (logging_steps; a value < 1 is a ratio of max_t)."""
    first = min(training_arg_values(base, space, "logging_steps"))
    return max(1, math.floor(first * max_t) if first < 1 else math.ceil(first))
