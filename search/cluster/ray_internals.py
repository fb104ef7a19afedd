"""Every use of Ray's private insides, in one place, checked against Ray 2.59-2.6x.

Ray's public API does not reach: the study and live trials of an `OptunaSearch`, which the
ASHA-aware searcher tells what ASHA did (`search.trial.searcher`); a restored `Tuner`'s run
config, where this session's callbacks and stopper replace those pickled in `tuner.pkl`; the
checkpoint a trial resumes from, re-pointed when Tune deleted it before a killed session saved
the next (`search.resume.state`); the trial statuses of every session of an experiment
(`ExperimentAnalysis` reads only the newest state file).

`missing_private_apis()` lists what an installed Ray no longer has; a test fails with that
list, so an upgrade that removes one says where instead of breaking a resume silently.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from typing import Any

from search.store.storage import ExperimentPath

#: Ray versions these were read against.
CHECKED_AGAINST = "ray 2.59 - 2.6x"

#: (module, attribute) of each private name used here.
PRIVATE_NAMES = (
    ("ray.tune.search.optuna", "OptunaSearch._ot_study"),
    ("ray.tune.search.optuna", "OptunaSearch._ot_trials"),
    ("ray.tune.search.optuna", "OptunaSearch._completed_trials"),
    ("ray.tune.search.optuna", "OptunaSearch._space"),
    ("ray.tune.tuner", "Tuner._local_tuner"),
    ("ray.tune.impl.tuner_internal", "TunerInternal._run_config"),
    ("ray.train._internal.session", "_TrainingResult"),
    ("ray.tune.trainable.metadata", "_TrainingRunMetadata"),
    ("ray.train._internal.checkpoint_manager", "_CheckpointManager._checkpoint_results"),
    ("ray.train._internal.checkpoint_manager", "_CheckpointManager._latest_checkpoint_result"),
)


def missing_private_apis() -> list[str]:
    """The private names of `PRIVATE_NAMES` this Ray lacks (attributes set in `__init__` are
    found in its source)."""
    import inspect

    missing = []
    for module_name, dotted in PRIVATE_NAMES:
        try:
            node: Any = importlib.import_module(module_name)
        except ImportError:
            missing.append(f"{module_name} (module)")
            continue
        owner, _, attribute = dotted.rpartition(".")
        if owner:
            node = getattr(node, owner, None)
        found = node is not None and (hasattr(node, attribute) or (
            inspect.isclass(node) and f"self.{attribute}" in inspect.getsource(node)))
        if not found:
            missing.append(f"{module_name}.{dotted}")
    return missing


def optuna_study(searcher: Any) -> Any:
    """The Optuna study an `OptunaSearch` drives (None until it knows its space)."""
    return searcher._ot_study


def optuna_trials(searcher: Any) -> dict[str, Any]:
    """Tune trial id -> the live Optuna trial an `OptunaSearch` asked for."""
    return searcher._ot_trials


def completed_trials(searcher: Any) -> set[str]:
    """Tune trial ids an `OptunaSearch` has told the study about (a trial is told once)."""
    return searcher._completed_trials


def searcher_space(searcher: Any) -> Any:
    """An `OptunaSearch`'s space as Optuna distributions (or its define-by-run function)."""
    return searcher._space


def restored_run_config(tuner: Any) -> Any:
    """The `ray.tune.RunConfig` a restored `Tuner` will run with (settable in place)."""
    return tuner._local_tuner._run_config


def trial_entries(state: dict[str, Any]) -> Iterator[tuple[list[Any], dict[str, Any], Any]]:
    """(entry, trial fields, `_TrainingRunMetadata`) of each trial of a decoded
    `experiment_state-*.json`; one in a layout this Ray does not write is left to Tune."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    for entry in state.get("trial_data", []):
        try:
            trial = json.loads(entry[0])
            metadata = _TrainingRunMetadata.from_json_state(entry[1])
        except Exception:
            continue
        if isinstance(trial, dict):
            yield entry, trial, metadata


def checkpoint_results(manager: Any) -> list[Any]:
    """The training results (checkpoint + metrics) a trial's checkpoint manager keeps."""
    return list(manager._checkpoint_results)


def repoint_checkpoint(entry: list[Any], metadata: Any, kept: list[Any],
                       checkpoint: Any | None, metrics: dict[str, Any]) -> None:
    """Keep only `kept` results and make `checkpoint` (with `metrics`) the latest one to resume
    from (None: start over), in the trial's `entry` of the state."""
    from ray.train._internal.session import _TrainingResult

    manager = metadata.checkpoint_manager
    manager._checkpoint_results = kept
    manager._latest_checkpoint_result = None if checkpoint is None else _TrainingResult(
        checkpoint=checkpoint, metrics=metrics)
    metadata.invalidate_cache()
    entry[1] = metadata.get_json_state()


def trial_states(experiment_dir: ExperimentPath) -> dict[str, tuple[str, str]]:
    """Trial folder name -> (trial id, status) from every session's `experiment_state-*.json`,
    newer sessions winning; any surprise in a file's format means nothing from it."""
    states: dict[str, tuple[str, str]] = {}
    for path in sorted(experiment_dir.glob("experiment_state-*.json"), key=lambda p: p.name):
        found = {}
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            for entry in state.get("trial_data", []):
                trial = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
                if trial.get("relative_logdir"):
                    found[str(trial["relative_logdir"])] = (str(trial.get("trial_id", "")),
                                                            str(trial.get("status", "")))
        except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
            continue
        states.update(found)
    return states
