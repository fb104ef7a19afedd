"""Who won a search, and the winner's complete run config as `best_config.yaml`.

The winner is the trial with the best value of the metric ever reported (Tune's
`scope="all"`), so a trial that ASHA stopped early competes with the score it actually
reached. Its config is the base with the trial's values set by the same function the
trainable trains with (`search.trial.trial_config.trial_run_config`), rounding included.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from detr_core.config.metric_names import is_better
from detr_core.files.yaml_io import dumps_yaml
from search.results.reading import TrialRecord
from search.results.warm_trials import source_spec
from search.space.spec import SearchSpec
from search.store.files import display_path, write_text_atomic
from search.store.layout import BEST_CONFIG_FILE
from search.store.storage import ExperimentPath
from search.store.values import as_int
from search.trial.status import ERRORED
from search.trial.trial_config import trial_run_config, trial_threads


def rank_trials(trials: Sequence[TrialRecord], mode: str) -> list[TrialRecord]:
    """Trials best first by their best metric; errored trials after clean ones, no value last.

    Errored trials rank behind the others because a config that crashed may crash again when
    retrained: rank 1 is always the winner (see `pick_winner`). Ties keep trial-id order.
    """

    def compare(a: TrialRecord, b: TrialRecord) -> int:
        group_a = (a.best_value is None, a.status == ERRORED)
        group_b = (b.best_value is None, b.status == ERRORED)
        if group_a != group_b:
            return -1 if group_a < group_b else 1
        if is_better(a.best_value, b.best_value, mode):
            return -1
        if is_better(b.best_value, a.best_value, mode):
            return 1
        return -1 if a.trial_id < b.trial_id else int(a.trial_id > b.trial_id)

    return sorted(trials, key=functools.cmp_to_key(compare))


def pick_winner(trials: Sequence[TrialRecord], mode: str) -> TrialRecord | None:
    """The trial with the best metric ever reported; an errored one only if no other has one."""
    ranked = rank_trials(trials, mode)
    return ranked[0] if ranked and ranked[0].best_value is not None else None


def trial_thread_count(spec: SearchSpec, trial: TrialRecord) -> int:
    """The torch threads a trial trained with: as it reported them, else its CPU share."""
    reported = [as_int(r.get("num_threads")) for r in trial.results]
    reported = [n for n in reported if n is not None]
    return reported[-1] if reported else trial_threads(spec.resources.cpus_per_trial)


def build_best_config(spec: SearchSpec, trial: TrialRecord) -> dict[str, Any]:
    """A trial's complete run config: exactly what the trainable trained it with, thread
    count included (the same config and thread count on the same machine give the same
    curve). A warm-start trial's comes from its own experiment's spec when that can be read
    (else from this search's, which trains the same run by the warm-start rules)."""
    own = source_spec(trial)
    # a trial's params are the values it trained with (`trial_values`: rounded, and made
    # absolute where the model is searched), so they are set as they are: no space
    if own is not None and trial.source_params is not None:
        return trial_run_config(own.base, {}, trial.source_params,
                                threads=trial_thread_count(own, trial))
    return trial_run_config(spec.base, {}, trial.params,
                            threads=trial_thread_count(spec, trial))


def write_best_config(
    experiment_dir: ExperimentPath, spec: SearchSpec, winner: TrialRecord
) -> tuple[dict[str, Any], ExperimentPath]:
    """Write `best_config.yaml` (atomically) with a header naming the trial and its best step."""
    config = build_best_config(spec, winner)
    path = experiment_dir / BEST_CONFIG_FILE
    origin = (f" (a warm-start trial of experiment {winner.origin}, not retrained here: "
              "this is its run config there)" if winner.origin else "")
    header = (
        f"Best run config of search `{spec.name}`, written by search/export.py.\n"
        f"Winner: trial {winner.trial_id}{origin}, best {spec.metric} = {winner.best_value!r} "
        f"({spec.mode}) at step {winner.best_step}.\n"
        f"Reproduce: python -m detr_core.train --config {display_path(path)}\n"
        f"num_threads is the trial's thread count: keep it for a bit-exact rerun on this "
        "machine."
    )
    return config, write_text_atomic(path, dumps_yaml(config, header=header))
