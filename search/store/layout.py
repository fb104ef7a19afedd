"""The names of the files and folders of one experiment folder (`<storage>/<name>`), defined
here only (Ray Tune's own per-trial files keep Ray's names, a detr_core run's its own), and the
numbers read back from Tune's JSON or CSV text, where a metric may be missing, NaN or a string.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# the names a detr_core run gives them, re-exported
from detr_core.files.file_io import BEST_MODEL_DIR as BEST_MODEL_DIR
from detr_core.files.file_io import TEST_METRICS_FILE as TEST_METRICS_FILE

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


def as_float(value: Any) -> float | None:
    """A finite float, or None for missing / NaN / inf / non-numbers (bools excluded)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_int(value: Any) -> int | None:
    """`as_float` truncated to an int (some writers write steps as floats)."""
    number = as_float(value)
    return int(number) if number is not None else None


def parse_scalar(text: str | None) -> Any:
    """A progress.csv cell back to int / float / bool / str (None when empty)."""
    if text is None or text == "":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def json_safe(value: Any) -> Any:
    """NaN / inf -> None (null), recursively: strict JSON readers reject `NaN`."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
