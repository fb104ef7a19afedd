"""The Optuna searcher (TPE by default; any sampler of `experiment.searcher.sampler`) that
learns from ASHA's early stops the right way.

Stock `OptunaSearch` reports intermediate values by `training_iteration` and tells Optuna
COMPLETE with the *last* value of a trial that ASHA stopped at an early rung: TPE then treats a
partial-budget score as final. Here intermediate values are keyed by the optimizer `step`,
a trial stopped before its budget (`search.trial.status.is_early_stopped`) is told as PRUNED
(Optuna keeps its intermediate values), and a finished trial is told its *best* value, the
step whose checkpoint is kept. The study lives in an Optuna journal file inside the experiment
folder (`search.store.study_journal`, on any storage), so it survives the driver and can be read
with
`optuna.load_study`.

`warm_start` seeds a new study with trials of earlier searches (`search.lineage`): each is added
once, with its values, its best value (COMPLETE) or as PRUNED with its intermediate values by
step, marked with the user attributes `warm_start_source` / `warm_start_trial`; a study that
already holds them (a resumed search) is left as it is. `first_points` (the space file's
`points_to_evaluate`) are enqueued the same way, once (`search.space.spec`).
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
        """The warm-start trials and the space file's points_to_evaluate, once: not again in a
        resumed or continued study (Ray's own `points_to_evaluate` would enqueue them in every
        session)."""
        self._add_warm_start_trials()
        enqueue_points(self.study, self._first_points)

    def _add_warm_start_trials(self) -> None:
        """Add the warm-start trials to the study, unless it holds them already."""
        space = searcher_space(self)
        if not self._warm_start or callable(space):
            return
        import optuna
        from optuna.trial import TrialState

        if any("warm_start_source" in t.user_attrs for t in self.study.get_trials(
                deepcopy=False)):
            return  # a resumed search: its journal has them
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
                print(f"warning: warm-start trial {warm['user_attrs'].get('warm_start_trial')} "
                      f"left out of the study: {exc}", file=sys.stderr, flush=True)
        self.study.add_trials(trials)

    def _is_open(self, trial_id: str) -> bool:
        return trial_id in optuna_trials(self) and trial_id not in completed_trials(self)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if not self._is_open(trial_id):
            return
        self._record(trial_id, result)

    def _record(self, trial_id: str, result: dict) -> None:
        """Keep the best value and report it to Optuna as the value at `result['step']`."""
        value, step = as_float(result.get(self.metric)), as_int(result.get("step"))
        if value is None or step is None:
            return
        if is_better(value, self._best_values.get(trial_id), self.mode):
            self._best_values[trial_id] = value
        steps = self._reported_steps.setdefault(trial_id, set())
        if int(step) not in steps:  # a trial resumed from a checkpoint repeats steps
            steps.add(int(step))
            optuna_trials(self)[trial_id].report(value, int(step))

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if not self._is_open(trial_id):
            return
        from optuna.trial import TrialState

        if result:  # the last result (e.g. the one ASHA stopped at) skips on_trial_result
            self._record(trial_id, result)
        ot_trial = optuna_trials(self)[trial_id]
        best = self._best_values.get(trial_id)
        if error or best is None:
            state, value = (TrialState.FAIL, None) if error else (TrialState.PRUNED, None)
        elif result is not None and is_early_stopped(result, self._max_t):
            state, value = TrialState.PRUNED, None
        else:
            state, value = TrialState.COMPLETE, best
        self.study.tell(ot_trial, value, state=state)
        completed_trials(self).add(trial_id)
