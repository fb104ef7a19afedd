"""The files and folders of one experiment folder (`<storage>/<name>`), named once.

The driver, the trainable, the searcher and the export all read or write these; each name is
defined here only. `best_model/` and `test_metrics.json` take the names a detr_core run gives
them (`detr_core.files.run_layout`). Ray Tune's own per-trial files (`params.json`, `result.json`,
`progress.csv`, `error.txt`, `events.out.tfevents.*`, `checkpoint_*`) keep Ray's names.
"""

from __future__ import annotations

from detr_core.files.run_layout import BEST_MODEL_DIR, TEST_METRICS_FILE

__all__ = [
    "BEST_CONFIG_FILE",
    "BEST_MODEL_DIR",
    "CHECKPOINT_META_FILE",
    "COMPARE_FILE",
    "COMPARE_PLOTS_DIR",
    "EVALUATION_LOG_FILE",
    "FINALISTS_DIR",
    "FINALISTS_PLAN_FILE",
    "INTERRUPTED_FILE",
    "MODEL_SOURCE_FILE",
    "PLOTS_DIR",
    "PREPARED_DATA_FILE",
    "REPORT_FILE",
    "SPEC_FILE",
    "STUDY_FILE",
    "TEST_METRICS_FILE",
    "TIME_BUDGET_FILE",
    "TRIALS_CSV_FILE",
    "TRIAL_LOG_FILE",
    "WARM_START_FILE",
]

# written by the driver when a search starts
SPEC_FILE = "search_spec.yaml"          # the resolved search (read back by the export)
PREPARED_DATA_FILE = "prepared_data.json"  # absolute COCO paths the trials train on
STUDY_FILE = "optuna_study.log"         # Optuna journal of the TPE searcher
TIME_BUDGET_FILE = "time_budget.json"   # written when --time-budget ended the search
INTERRUPTED_FILE = "interrupted.json"   # written when Ctrl-C / SIGTERM stopped the search
WARM_START_FILE = "warm_start.json"     # --warm-start: the earlier trials the study was seeded with

# written into each trial's folder
TRIAL_LOG_FILE = "trial.log"            # the trial's own output: HF logs, progress bars, warnings
CHECKPOINT_META_FILE = "checkpoint_meta.json"  # in each checkpoint: step, metric, value

# written by the export
BEST_CONFIG_FILE = "best_config.yaml"
MODEL_SOURCE_FILE = "export_source.json"  # in best_model/: which trial checkpoint it is
EVALUATION_LOG_FILE = "test_evaluation.log"  # in best_model/: output of its test evaluation
TRIALS_CSV_FILE = "trials.csv"
REPORT_FILE = "REPORT.md"
PLOTS_DIR = "plots"

# written by the finalists stage (`--finalists K --finalist-seeds S`, `--final-seeds S`)
FINALISTS_PLAN_FILE = "finalists.json"  # which configurations, which fresh seeds
FINALISTS_DIR = "finalists"             # its Ray Tune experiment: a trial per configuration x seed

# written by `search/export.py --compare` (into its --out folder)
COMPARE_FILE = "COMPARE.md"
COMPARE_PLOTS_DIR = "compare_plots"
