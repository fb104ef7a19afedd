"""Rebuild everything a search leaves behind from its Ray Tune experiment folder alone.

    python search/export.py results/<name>            # re-export (also after a crash / resume)
    python search/export.py results/<name> --no-evaluate
    python search/export.py s3://bucket/results/<name> --report-dir reports/<name>
    python search/export.py --compare results/iou results/iou-2 [--out DIR]   # COMPARE.md

Reads `search_spec.yaml` and the trial folders (`search.results.reading`), then writes into the
experiment folder (a local path or any storage URI `pyarrow.fs` resolves: `search.store.storage`):

- `best_config.yaml`  complete detr_core run config of the winner (`search.results.winner`);
- `best_model/`       the winner's `save_pretrained` folder from its best step, not its last
                      (`search.results.winner`);
- `trials.csv`        one row per trial: status, trained values, best metric and step, time;
- `plots/*.png`       curves, one chart per hyperparameter, importances (`search.results.plots`);
- `test_metrics.json` the winner's test-split metrics, when the run config has a test split
                      (`search.results.winner`);
- finalists           when the finalists stage ran (`finalists.json`, `finalists/`), the winner
                      is the configuration with the best mean validation value over its fresh
                      runs, `best_config.yaml` and `best_model/` its best such run
                      (`search.results.finalists`);
- warm-start trials   the earlier trials a `--warm-start` search was seeded with
                      (`warm_start.json`, `search.results.warm_trials`) are ranked, drawn and
                      may win like the others; a warm-start winner's config and model come
                      from its own experiment;
- `REPORT.md`         the search diary (`search.results.report`), with "What mattered"
                      (`search.results.importance`), and, when Ctrl-C / SIGTERM stopped the search,
                      which trials were running and the command that resumes it;
                      `--report-dir DIR` copies it with its plots to a local folder too.

Every file is written atomically and `best_model/` is swapped in whole: an export killed at
any moment leaves complete files (old or new), and the next export clears its leftovers. On an
object store (`search.store.storage.UriPath`) a file is written in one upload, which is atomic too.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from detr_core.files.errors import UserInputError
from detr_core.files.file_io import remove_stale_temporaries
from search.results.finalists import read_finalists, write_finalist_config
from search.results.importance import parameter_importances
from search.results.reading import read_interrupt_record
from search.results.report import ExportSummary, render_report, status_counts
from search.results.trials_csv import param_keys, write_trials_csv
from search.results.warm_trials import experiment_trials
from search.results.winner import (
    copy_winner_model,
    pick_winner,
    winner_test_metrics,
    write_best_config,
)
from search.space.spec import read_spec_file
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


def export_experiment(experiment_dir: str | Path | ExperimentPath,
                      evaluate_winner: bool = True) -> ExportSummary:
    """Rebuild every output of a search from its experiment folder (see module docstring).

    Raises `UserInputError` when the folder is not an experiment or holds no trials.
    """
    from search.results.plots import write_importances_plot, write_plots  # matplotlib: only here

    experiment_dir = location(experiment_dir)
    if not experiment_dir.is_dir():
        raise UserInputError("no such folder", source=experiment_dir)
    spec = read_spec_file(experiment_dir)
    trials, warm_start = experiment_trials(experiment_dir, spec)
    for name in (BEST_CONFIG_FILE, BEST_MODEL_DIR, REPORT_FILE, TEST_METRICS_FILE,
                 TRIALS_CSV_FILE):
        remove_stale_temporaries(experiment_dir, name)
    remove_stale_temporaries(experiment_dir / PLOTS_DIR)
    keys = param_keys(spec, trials)
    winner = pick_winner(trials, spec.mode)
    finalists = read_finalists(experiment_dir, spec)
    chosen = finalists.winner_run if finalists is not None else None
    if chosen is not None:  # the configuration the finalists chose, shown by its search trial
        source = finalists.winner.configuration.source_trial
        winner = next((t for t in trials if t.trial_id == source), winner)
    importances = parameter_importances(spec, trials)
    summary = ExportSummary(
        experiment_dir=experiment_dir,
        name=spec.name,
        metric=spec.metric,
        mode=spec.mode,
        trials=trials,
        status_counts=status_counts(trials),
        winner=winner,
        trials_csv=write_trials_csv(experiment_dir / TRIALS_CSV_FILE, spec, trials, keys),
        report_path=experiment_dir / REPORT_FILE,
        plots=write_plots(experiment_dir / PLOTS_DIR, spec, trials, keys,
                          winner.trial_id if winner else None),
        importances=importances,
        importances_plot=write_importances_plot(experiment_dir / PLOTS_DIR, importances),
        finalists=finalists,
        interruption=read_interrupt_record(experiment_dir),
        warm_start=warm_start,
    )
    if chosen is not None:
        summary.best_config, summary.best_config_path = write_finalist_config(
            experiment_dir, spec, finalists, chosen)
        summary.best_model_dir, summary.model_step, summary.model_source = copy_winner_model(
            experiment_dir, chosen.trial, spec.mode, root=experiment_dir)
        if chosen.test_metrics is not None:  # evaluated once, on this very model
            write_json_atomic(experiment_dir / TEST_METRICS_FILE, chosen.test_metrics)
    elif winner is not None:
        summary.best_config, summary.best_config_path = write_best_config(
            experiment_dir, spec, winner)
        summary.best_model_dir, summary.model_step, summary.model_source = copy_winner_model(
            experiment_dir, winner, spec.mode)
    generated = datetime.now(timezone.utc)
    write_text_atomic(summary.report_path, render_report(summary, spec, keys, generated))
    summary.test_metrics, summary.test_error = winner_test_metrics(
        experiment_dir, summary.best_config, summary.best_config_path, summary.best_model_dir,
        evaluate_winner)
    if summary.test_metrics is not None or summary.test_error:
        write_text_atomic(summary.report_path, render_report(summary, spec, keys, generated))
    return summary


def copy_report(summary: ExportSummary, report_dir: Path) -> Path:
    """A local copy of REPORT.md with the plots it shows (`--report-dir`); returns its path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(report_dir / REPORT_FILE, summary.report_path.read_text(encoding="utf-8"))
    copy_tree(summary.experiment_dir / PLOTS_DIR, report_dir / PLOTS_DIR)
    return report_dir / REPORT_FILE
