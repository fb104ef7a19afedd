"""Where it all lives: experiment locations on a local folder or any `pyarrow.fs` URI
(`storage`), atomic writes and JSON reads there (`files`), the names of every file an
experiment holds (`layout`), values read back from those files (`values`) and the Optuna
study journal (`study_journal`). A new storage backend is whatever `pyarrow.fs` resolves.

Imports: nothing of search; `detr_core` through its public names.

Public names (other packages import these, not the modules; each is imported on first use):
`as_float`, `as_int`, `BEST_CONFIG_FILE`, `BEST_MODEL_DIR`, `CHECKPOINT_META_FILE`,
`COMPARE_FILE`, `COMPARE_PLOTS_DIR`, `copy_tree`, `display_path`, `EVALUATION_LOG_FILE`,
`ExperimentPath`, `FINALISTS_DIR`, `FINALISTS_PLAN_FILE`, `folder_has_entries`,
`INTERRUPTED_FILE`, `is_uri`, `join_uri`, `journal_storage`, `local_copy`, `location`,
`MODEL_SOURCE_FILE`, `parse_scalar`, `PLOTS_DIR`, `PREPARED_DATA_FILE`, `read_json`,
`relative_posix`, `remove_tree`, `REPORT_FILE`, `SPEC_FILE`, `split_uri`, `STUDY_FILE`,
`TEST_METRICS_FILE`, `TIME_BUDGET_FILE`, `TRIAL_LOG_FILE`, `TRIALS_CSV_FILE`, `UriPath`,
`WARM_START_FILE`, `write_bytes_atomic`, `write_json_atomic`, `write_text_atomic`.
"""

from __future__ import annotations

from search.store.lazy_names import lazy_public_names

#: public name -> the module of this package that defines it
_HOME = {
    "lazy_public_names": "lazy_names",
    "BEST_CONFIG_FILE": "layout",
    "BEST_MODEL_DIR": "layout",
    "CHECKPOINT_META_FILE": "layout",
    "COMPARE_FILE": "layout",
    "COMPARE_PLOTS_DIR": "layout",
    "EVALUATION_LOG_FILE": "layout",
    "ExperimentPath": "storage",
    "INTERRUPTED_FILE": "layout",
    "MODEL_SOURCE_FILE": "layout",
    "PLOTS_DIR": "layout",
    "PREPARED_DATA_FILE": "layout",
    "REPORT_FILE": "layout",
    "FINALISTS_DIR": "layout",
    "FINALISTS_PLAN_FILE": "layout",
    "SPEC_FILE": "layout",
    "STUDY_FILE": "layout",
    "TEST_METRICS_FILE": "layout",
    "TIME_BUDGET_FILE": "layout",
    "TRIALS_CSV_FILE": "layout",
    "TRIAL_LOG_FILE": "layout",
    "WARM_START_FILE": "layout",
    "UriPath": "storage",
    "as_float": "values",
    "as_int": "values",
    "copy_tree": "storage",
    "display_path": "files",
    "folder_has_entries": "storage",
    "is_uri": "storage",
    "join_uri": "storage",
    "journal_storage": "study_journal",
    "local_copy": "storage",
    "location": "storage",
    "parse_scalar": "values",
    "read_json": "files",
    "relative_posix": "storage",
    "remove_tree": "storage",
    "split_uri": "storage",
    "write_bytes_atomic": "files",
    "write_json_atomic": "files",
    "write_text_atomic": "files",
}

__all__ = sorted(_HOME)

__getattr__ = lazy_public_names(__name__, _HOME, globals())
