"""What mattered: how much of the metric's variation each searched hyperparameter explains.

Optuna's importance evaluators only read COMPLETE trials, the few an ASHA search runs to the
end, so every trial counts here with its value at the FIRST rung (what ASHA judged it by), in an
in-memory Optuna study apportioned by Optuna's seeded fANOVA evaluator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from search.results.reading import TrialRecord
from search.space.distributions import is_distribution
from search.space.relative_ranges import factor_values, per_trial_keys
from search.space.spec import SearchSpec
from search.store.layout import as_float, as_int

#: Fewer trials than this at the first rung: no importances (a forest on 2 points says nothing).
MIN_TRIALS = 3
METHOD = ("fANOVA (optuna.importance.FanovaImportanceEvaluator, seed 0) on every trial's "
          "value at the first ASHA rung")


@dataclass
class Importances:
    """The result: per-parameter importance (largest first), or why there is none."""

    metric: str
    rung_step: int
    n_trials: int
    values: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    method: str = METHOD


def value_at_step(results: Sequence[dict[str, Any]], metric: str, step: int) -> float | None:
    """`metric` of the first result at or past `step` (what ASHA records for a rung)."""
    return next((as_float(r.get(metric)) for r in results
                 if (s := as_int(r.get("step"))) is not None and s >= step), None)


def rung_points(spec: SearchSpec, trials: Sequence[TrialRecord]
                ) -> list[tuple[dict[str, Any], float]]:
    """(searched values, metric at the first rung) of every trial that reached it."""
    keys = spec.searched_keys()
    relative = per_trial_keys(spec.recipe)  # as the space samples them: factors
    points = []
    for trial in trials:
        value = value_at_step(trial.results, spec.metric, spec.scheduler.grace_period)
        if value is not None and all(k in trial.params for k in keys):
            params = factor_values(trial.params, spec.base, relative)
            points.append(({k: params[k] for k in keys}, value))
    return points


def optuna_distribution(dist: dict) -> Any:
    """One of our distributions as the Optuna distribution a sampled value belongs to."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    name, args = next(iter(dist.items()))
    if name == "choice":
        return CategoricalDistribution(args)
    log = name in ("loguniform", "qloguniform", "lograndint")
    if name in ("randint", "qrandint", "lograndint"):
        step = int(args[2]) if name == "qrandint" else 1
        return IntDistribution(int(args[0]), int(args[1]), log=log, step=step)
    # a float grid (quniform) is left continuous: rounded values need not sit on Optuna's grid
    return FloatDistribution(float(args[0]), float(args[1]), log=log)


def parameter_importances(spec: SearchSpec, trials: Sequence[TrialRecord]) -> Importances:
    """fANOVA importances of the searched keys on the first-rung values."""
    import optuna

    rung = spec.scheduler.grace_period
    points = rung_points(spec, trials)
    result = Importances(metric=spec.metric, rung_step=rung, n_trials=len(points))
    if len(points) < MIN_TRIALS:
        result.reason = (f"{len(points)} trial(s) reached the first rung (step {rung}); at "
                         f"least {MIN_TRIALS} are needed")
        return result
    distributions = {k: optuna_distribution(v) for k, v in spec.space.items()
                     if is_distribution(v)}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in memory"
    try:
        study = optuna.create_study(direction="minimize" if spec.mode == "min" else "maximize")
        study.add_trials([optuna.trial.create_trial(params=params, distributions=distributions,
                                                    value=value) for params, value in points])
        if len({value for _, value in points}) < 2:
            result.reason = f"all {len(points)} trials had the same value at the first rung"
            return result
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    finally:
        optuna.logging.set_verbosity(verbosity)
    result.values = {k: float(v) for k, v in found.items()}
    return result
