"""Who won a search, and the winner's complete run config as `best_config.yaml`.

The winner is the trial with the best value of the metric ever reported (Tune's
`scope="all"`), so a trial that ASHA stopped early competes with the score it actually
reached. Its config is the base with the trial's values set by the same function the
trainable trains with (`search.trial_config.trial_run_config`), rounding included.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detr_core.metric_names import is_better
from detr_core.yaml_io import dump_yaml
from search.files import display_path
from search.layout import BEST_CONFIG_FILE
from search.results import TrialRecord
from search.spec import SearchSpec
from search.trial_config import trial_run_config
from search.trial_status import ERRORED


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


def build_best_config(spec: SearchSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The winner's complete run config: exactly what the trainable trains a trial with."""
    return trial_run_config(spec.base, spec.space, params)


def write_best_config(
    experiment_dir: Path, spec: SearchSpec, winner: TrialRecord
) -> tuple[dict[str, Any], Path]:
    """Write `best_config.yaml` (atomically) with a header naming the trial and its best step."""
    config = build_best_config(spec, winner.params)
    path = experiment_dir / BEST_CONFIG_FILE
    header = (
        f"Best run config of search `{spec.name}`, written by search/export.py.\n"
        f"Winner: trial {winner.trial_id}, best {spec.metric} = {winner.best_value!r} "
        f"({spec.mode}) at step {winner.best_step}.\n"
        f"Reproduce: python -m detr_core.train --config {display_path(path)}"
    )
    dump_yaml(config, path, header=header)  # atomic: never a truncated best_config.yaml
    return config, path
