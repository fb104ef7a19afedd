"""The Optuna searcher that learns from ASHA's early stops the right way.

Stock `OptunaSearch` keys intermediate values by `training_iteration` and tells Optuna COMPLETE
with the *last* value of a trial ASHA stopped early, so TPE treats a partial-budget score as
final. Here values are keyed by the optimizer `step`, a trial stopped before its budget
(`search.trial.status.is_early_stopped`) is told PRUNED, and a finished trial its *best* value.
The study is an Optuna journal in the experiment folder, seeded once (not again when resumed)
with `warm_start` trials of earlier searches and `first_points` (`points_to_evaluate`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from detr_core.config.metric_names import is_better
from search.cluster.ray_internals import (
    completed_trials,
    optuna_study,
    optuna_trials,
    searcher_space,
)
from search.space.spec import enqueue_points
from search.store.layout import as_float, as_int
from search.trial.status import is_early_stopped


class AshaAwareOptunaSearch(OptunaSearch):
    """`OptunaSearch` with step-keyed reports, PRUNED for ASHA stops and best-value results."""

    def __init__(self, *args: Any, max_t: int,
                 warm_start: Sequence[Mapping[str, Any]] = (),
                 first_points: Sequence[Mapping[str, Any]] = (), **kwargs: Any) -> None:
        self._max_t = max_t
        self._first_points = [dict(p) for p in first_points]
        self._best_values: dict[str, float] = {}
        self._reported_steps: dict[str, set[int]] = {}
        self._warm_start = [dict(t) for t in warm_start]
        super().__init__(*args, **kwargs)
        if optuna_study(self) is not None:  # a space given here: the study exists already
            self._seed_study()

    @property
    def study(self) -> Any:
        """The Optuna study (`optuna.load_study` reads the same one from the journal)."""
        return optuna_study(self)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        if not super().set_search_properties(metric, mode, config, **spec):
            return False
        self._seed_study()
        return True

    def _seed_study(self) -> None:
        space = searcher_space(self)
        if self._warm_start and not callable(space) and not any(
                "warm_start_source" in t.user_attrs for t in self.study.get_trials(deepcopy=False)):
            import optuna
            from optuna.trial import TrialState

            trials = []
            for warm in self._warm_start:
                params = warm["params"]
                try:
                    trials.append(optuna.trial.create_trial(
                        params=params, distributions={k: space[k] for k in params},
                        value=warm["value"], state=TrialState[warm["state"]],
                        intermediate_values={int(k): float(v)
                                             for k, v in warm["intermediate_values"].items()},
                        user_attrs=dict(warm["user_attrs"]),
                    ))
                except (ValueError, KeyError) as exc:  # the plan checked it: should not happen
                    print(f"warning: warm-start trial "
                          f"{warm['user_attrs'].get('warm_start_trial')} left out of the study: "
                          f"{exc}", file=sys.stderr, flush=True)
            self.study.add_trials(trials)
        enqueue_points(self.study, self._first_points)

    def _is_open(self, trial_id: str) -> bool:
        return trial_id in optuna_trials(self) and trial_id not in completed_trials(self)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self._is_open(trial_id):
            self._record(trial_id, result)

    def _record(self, trial_id: str, result: dict) -> None:
        """Keep the best value and report it to Optuna as the value at `result['step']`."""
        value, step = as_float(result.get(self.metric)), as_int(result.get("step"))
        if value is None or step is None:
            return
        if is_better(value, self._best_values.get(trial_id), self.mode):
            self._best_values[trial_id] = value
        steps = self._reported_steps.setdefault(trial_id, set())
        if step not in steps:  # a trial resumed from a checkpoint repeats steps
            steps.add(step)
            optuna_trials(self)[trial_id].report(value, step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if not self._is_open(trial_id):
            return
        from optuna.trial import TrialState

        if result:  # the last result (e.g. the one ASHA stopped at) skips on_trial_result
            self._record(trial_id, result)
        best = self._best_values.get(trial_id)
        if error:
            state, value = TrialState.FAIL, None
        elif best is None or (result is not None and is_early_stopped(result, self._max_t)):
            state, value = TrialState.PRUNED, None
        else:
            state, value = TrialState.COMPLETE, best
        self.study.tell(optuna_trials(self)[trial_id], value, state=state)
        completed_trials(self).add(trial_id)
