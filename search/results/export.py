"""Rebuild everything a search leaves behind from its experiment folder alone (a local path or
a storage URI): `best_config.yaml`, `best_model/`, `test_metrics.json`, `trials.csv`, `plots/`
and `REPORT.md`. Every file is written atomically and `best_model/` swapped in whole: an export
killed at any moment leaves complete files, and the next export clears its leftovers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from detr_core.files.errors import UserInputError
from detr_core.files.file_io import remove_stale_temporaries
from search.results.finalists import read_finalists, write_finalist_config
from search.results.importance import parameter_importances
from search.results.reading import TrialRecord, read_interrupt_record, shown_beside
from search.results.report import ExportSummary, render_report, status_counts
from search.results.warm_trials import WARM_START, experiment_trials
from search.results.winner import (
    copy_winner_model,
    pick_winner,
    rank_trials,
    winner_test_metrics,
    write_best_config,
)
from search.space.spec import SearchSpec, read_spec_file
from search.store.layout import (
    BEST_CONFIG_FILE,
    BEST_MODEL_DIR,
    PLOTS_DIR,
    REPORT_FILE,
    TEST_METRICS_FILE,
    TRIALS_CSV_FILE,
)
from search.store.storage import (
    ExperimentPath,
    copy_tree,
    location,
    write_json_atomic,
    write_text_atomic,
)


def param_keys(spec: SearchSpec, trials: Sequence[TrialRecord]) -> list[str]:
    """Columns for sampled values: the spec's searched keys, then any other key a trial has."""
    keys, fixed = spec.searched_keys(), spec.fixed_values()
    return keys + sorted({k for t in trials for k in t.params if k not in keys and k not in fixed})


def write_trials_csv(
    path: ExperimentPath, spec: SearchSpec, trials: Sequence[TrialRecord], keys: Sequence[str]
) -> ExperimentPath:
    """`trials.csv`: one row per trial, best first, with the values it trained with (columns:
    results/README.md)."""
    beside = shown_beside(spec.metric)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(["trial_id", "status", *keys, f"best_{spec.metric}", "best_step", *beside,
                     "last_step", "wall_time_s", "cpu_s", "error", "origin", "source_experiment"])
    for t in rank_trials(trials, spec.mode):
        writer.writerow(["" if v is None else v for v in (
            t.trial_id, t.status, *(t.params.get(k) for k in keys), t.best_value, t.best_step,
            *(t.value_at_best_step(m) for m in beside), t.last_step, t.wall_time_s,
            t.cpu_seconds(spec.resources.cpus_per_trial), t.error,
            WARM_START if t.origin else "search", t.origin)])
    return write_text_atomic(path, text.getvalue())


def export_experiment(experiment_dir: str | Path | ExperimentPath,
                      evaluate_winner: bool = True) -> ExportSummary:
    """Rebuild every output of a search; `UserInputError` for a folder with no experiment."""
    from search.results.plots import write_importances_plot, write_plots  # matplotlib: only here

    folder = location(experiment_dir)
    if not folder.is_dir():
        raise UserInputError("no such folder", source=folder)
    spec = read_spec_file(folder)
    trials, warm_start = experiment_trials(folder, spec)
    for name in (BEST_CONFIG_FILE, BEST_MODEL_DIR, REPORT_FILE, TEST_METRICS_FILE,
                 TRIALS_CSV_FILE):
        remove_stale_temporaries(folder, name)
    remove_stale_temporaries(folder / PLOTS_DIR)
    keys = param_keys(spec, trials)
    winner = pick_winner(trials, spec.mode)
    finalists = read_finalists(folder, spec)
    chosen = finalists.winner_run if finalists is not None else None
    if chosen is not None:  # the configuration the finalists chose, shown by its search trial
        source = finalists.winner.configuration.source_trial
        winner = next((t for t in trials if t.trial_id == source), winner)
    importances = parameter_importances(spec, trials)
    summary = ExportSummary(
        experiment_dir=folder, name=spec.name, metric=spec.metric, mode=spec.mode,
        trials=trials, status_counts=status_counts(trials), winner=winner,
        trials_csv=write_trials_csv(folder / TRIALS_CSV_FILE, spec, trials, keys),
        report_path=folder / REPORT_FILE,
        plots=write_plots(folder / PLOTS_DIR, spec, trials, keys,
                          winner.trial_id if winner else None),
        importances=importances,
        importances_plot=write_importances_plot(folder / PLOTS_DIR, importances),
        finalists=finalists, interruption=read_interrupt_record(folder), warm_start=warm_start,
    )
    if chosen is not None:
        summary.best_config, summary.best_config_path = write_finalist_config(
            folder, spec, finalists, chosen)
        summary.best_model_dir, summary.model_step, summary.model_source = copy_winner_model(
            folder, chosen.trial, spec.mode, root=folder)
        if chosen.test_metrics is not None:  # evaluated once, on this very model
            write_json_atomic(folder / TEST_METRICS_FILE, chosen.test_metrics)
    elif winner is not None:
        summary.best_config, summary.best_config_path = write_best_config(folder, spec, winner)
        summary.best_model_dir, summary.model_step, summary.model_source = copy_winner_model(
            folder, winner, spec.mode)
    generated = datetime.now(timezone.utc)
    write_text_atomic(summary.report_path, render_report(summary, spec, keys, generated))
    summary.test_metrics, summary.test_error = winner_test_metrics(
        folder, summary.best_config, summary.best_config_path, summary.best_model_dir,
        evaluate_winner)
    if summary.test_metrics is not None or summary.test_error:  # the report again, with them
        write_text_atomic(summary.report_path, render_report(summary, spec, keys, generated))
    return summary


def copy_report(summary: ExportSummary, report_dir: Path) -> Path:
    """A local copy of REPORT.md with the plots it shows (`--report-dir`); returns its path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(report_dir / REPORT_FILE, summary.report_path.read_text(encoding="utf-8"))
    copy_tree(summary.experiment_dir / PLOTS_DIR, report_dir / PLOTS_DIR)
    return report_dir / REPORT_FILE
