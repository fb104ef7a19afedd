"""`trials.csv`: one row per trial, best first, with the values it trained with.

Columns: `trial_id`, `status`, one per hyperparameter (the spec's searched keys, then any other
non-fixed key a trial had), `best_<metric>`, `best_step`, the `SHOWN_AT_BEST_STEP` metrics at
that step, `last_step`, `wall_time_s`, `cpu_s` (wall time x the trial's CPUs), `error`, `origin`
(`search` or `warm-start`) and `source_experiment`. Values are those the trial trained with
(`trial_values`: a `qloguniform` learning rate reads rounded, as in best_config.yaml).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from search.results.reading import TrialRecord, shown_beside
from search.results.warm_trials import origin_label
from search.results.winner import rank_trials
from search.space.spec import SearchSpec
from search.store.storage import ExperimentPath, write_text_atomic


def param_keys(spec: SearchSpec, trials: Sequence[TrialRecord]) -> list[str]:
    """Columns for sampled values: the spec's searched keys, then any other key a trial has."""
    keys, fixed = spec.searched_keys(), spec.fixed_values()
    return keys + sorted({k for t in trials for k in t.params if k not in keys and k not in fixed})


def write_trials_csv(
    path: ExperimentPath, spec: SearchSpec, trials: Sequence[TrialRecord], keys: Sequence[str]
) -> ExperimentPath:
    """One row per trial, best first (see the module docstring for the columns)."""
    beside = shown_beside(spec.metric)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(["trial_id", "status", *keys, f"best_{spec.metric}", "best_step", *beside,
                     "last_step", "wall_time_s", "cpu_s", "error", "origin", "source_experiment"])
    for t in rank_trials(trials, spec.mode):
        writer.writerow(["" if v is None else v for v in (
            t.trial_id, t.status, *(t.params.get(k) for k in keys), t.best_value, t.best_step,
            *(t.value_at_best_step(m) for m in beside), t.last_step, t.wall_time_s,
            t.cpu_seconds(spec.resources.cpus_per_trial), t.error, origin_label(t), t.origin)])
    return write_text_atomic(path, text.getvalue())
