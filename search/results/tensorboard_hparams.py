"""Each trial's TensorBoard event file carries its hyperparameters (the HParams tab).

Ray Tune's `TBXLoggerCallback` writes them only when a trial ends, with Optuna's raw draws;
this subclass writes them as the trial starts, with the values it trains with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.logger import TBXLoggerCallback

from search.trial.trainable import trial_values


def hparam_value(value: Any) -> str | bool | float:
    """A value as the HParams plugin stores it: string, bool or number (lists as text)."""
    if isinstance(value, bool | str):
        return value
    return float(value) if isinstance(value, int | float) else str(value)


class HParamsLoggerCallback(TBXLoggerCallback):
    """Tune's TensorBoard logger, with the trial's hyperparameters written as it starts."""

    def __init__(self, space: Mapping[str, Any], metrics: Sequence[str],
                 base: Mapping[str, Any] | None = None,
                 recipe: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._space, self._base, self._recipe = dict(space), base, recipe
        self._metrics = [f"ray/tune/{m}" for m in metrics]  # the tags of Tune's scalars
        self._session_end: dict[Any, Any] = {}

    def log_trial_start(self, trial: Any) -> None:
        super().log_trial_start(trial)
        from tensorboardX.summary import hparams

        trained = trial_values(self._space, trial.config, self._base, self._recipe)
        experiment, session_start, session_end = hparams(
            hparam_dict={k: hparam_value(v) for k, v in trained.items() if v is not None},
            metric_dict=dict.fromkeys(self._metrics, 0.0))
        writer = self._trial_writer[trial].file_writer
        writer.add_summary(experiment)
        writer.add_summary(session_start)
        writer.flush()
        self._session_end[trial] = session_end

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Close the writers of trials Tune never ended (cut by the time budget): flushed."""
        for trial in list(self._trial_writer):
            self._trial_writer.pop(trial).close()
            self._trial_result.pop(trial, None)
        super().on_experiment_end(trials, **info)

    def _try_log_hparams(self, trial: Any, result: dict) -> None:
        """At the trial's end only the session's end is added (its values are written)."""
        session_end = self._session_end.pop(trial, None)
        if session_end is not None:
            self._trial_writer[trial].file_writer.add_summary(session_end)
