"""`trials.csv`: one row per trial, best first, with the values it trained with.

Columns: `trial_id`, `status`, one per hyperparameter (the spec's searched keys, then any other
key a trial had that is not fixed), `best_<metric>`, `best_step`, the diary's metric and the
detection quality at that step (`eval_loss_bbox`, `eval_map_50`, `eval_recall`,
`eval_precision`, less the objective: `search.results.reading.SHOWN_AT_BEST_STEP`), `last_step`,
`wall_time_s`, `cpu_s` (wall time x the trial's CPUs), `error`, `origin` (`search`: trained
by this search; `warm-start`: taken from an earlier search by `--warm-start`) and
`source_experiment` (that search's folder). The values are those of
`search.trial.trainable.trial_values`, so a `qloguniform` learning rate reads as the rounded
value the trial used, as in best_config.yaml.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from search.results.reading import TrialRecord, shown_beside
from search.results.warm_trials import origin_label
from search.results.winner import rank_trials
from search.space.spec import SearchSpec
from search.store.storage import ExperimentPath, write_text_atomic


def param_keys(spec: SearchSpec, trials: Sequence[TrialRecord]) -> list[str]:
    """Columns for sampled values: the spec's searched keys, then any other key a trial has."""
    keys = spec.searched_keys()
    fixed = spec.fixed_values()
    extra = sorted({k for t in trials for k in t.params if k not in keys and k not in fixed})
    return keys + extra


def best_column(metric: str) -> str:
    """The trials.csv column of each trial's best value of `metric`."""
    return f"best_{metric}"


def write_trials_csv(
    path: ExperimentPath, spec: SearchSpec, trials: Sequence[TrialRecord], keys: Sequence[str]
) -> ExperimentPath:
    """One row per trial, best first (see the module docstring for the columns)."""
    beside = shown_beside(spec.metric)
    header = ["trial_id", "status", *keys, best_column(spec.metric), "best_step", *beside,
              "last_step", "wall_time_s", "cpu_s", "error", "origin", "source_experiment"]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(header)
    for t in rank_trials(trials, spec.mode):
        writer.writerow([
            t.trial_id, t.status, *(_cell(t.params.get(k)) for k in keys),
            _cell(t.best_value), _cell(t.best_step),
            *(_cell(t.value_at_best_step(m)) for m in beside), _cell(t.last_step),
            _cell(t.wall_time_s), _cell(t.cpu_seconds(spec.resources.cpus_per_trial)),
            t.error or "", origin_label(t), t.origin or "",
        ])
    return write_text_atomic(path, text.getvalue())


def _cell(value: Any) -> Any:
    return "" if value is None else value
