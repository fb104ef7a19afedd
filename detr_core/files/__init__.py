"""Files and errors: the lowest layer. The one error type a CLI turns into one line and
exit 2 (`errors`), reading user text files (`text_files`) and YAML (`yaml_io`), atomic
writes (`atomic_files`), the CLI argument parser that reports like the rest
(`cli_parser`), what a run writes where (`run_layout`) and the shipped `builtin:`
checkpoints (`builtin_models`).

Imports: the standard library and third-party packages only; nothing of detr_core.

Public names (other packages import these, not the modules): `ArgumentParser`, `BEST_MODEL_DIR`,
`BEST_STEP_FILE`, `builtin_problem`, `CATEGORIES_FILE`, `CHECKPOINT_FILES`, `CHECKPOINTS_DIR`,
`describe_value`, `detections_image`, `dump_yaml`, `dumps_yaml`, `EMA_DIR`, `EVAL_HISTORY_FILE`,
`exit_on_user_error`, `is_builtin`, `load_yaml_mapping`, `metrics_file`, `parse_yaml_mapping`,
`predictions_file`, `read_user_text`, `remove_stale_temporaries`, `replace_folder`,
`resolve_checkpoint`, `staging_folder`, `TENSORBOARD_DIR`, `TEST_METRICS_FILE`,
`UserInputError`, `write_json_atomic`, `write_text_atomic`.
"""

from __future__ import annotations

from detr_core.files.atomic_files import (
    remove_stale_temporaries,
    replace_folder,
    staging_folder,
    write_json_atomic,
    write_text_atomic,
)
from detr_core.files.builtin_models import (
    CHECKPOINT_FILES,
    builtin_problem,
    is_builtin,
    resolve_checkpoint,
)
from detr_core.files.cli_parser import ArgumentParser
from detr_core.files.errors import (
    UserInputError,
    describe_value,
    errors_from,
    exit_on_user_error,
)
from detr_core.files.run_layout import (
    BEST_MODEL_DIR,
    BEST_STEP_FILE,
    CATEGORIES_FILE,
    CHECKPOINTS_DIR,
    EMA_DIR,
    EVAL_HISTORY_FILE,
    TENSORBOARD_DIR,
    TEST_METRICS_FILE,
    detections_image,
    metrics_file,
    predictions_file,
)
from detr_core.files.text_files import read_user_text
from detr_core.files.yaml_io import dump_yaml, dumps_yaml, load_yaml_mapping, parse_yaml_mapping

__all__ = [
    "BEST_MODEL_DIR",
    "BEST_STEP_FILE",
    "CATEGORIES_FILE",
    "CHECKPOINTS_DIR",
    "CHECKPOINT_FILES",
    "EMA_DIR",
    "EVAL_HISTORY_FILE",
    "TENSORBOARD_DIR",
    "TEST_METRICS_FILE",
    "ArgumentParser",
    "UserInputError",
    "builtin_problem",
    "describe_value",
    "detections_image",
    "dump_yaml",
    "dumps_yaml",
    "errors_from",
    "exit_on_user_error",
    "is_builtin",
    "load_yaml_mapping",
    "metrics_file",
    "parse_yaml_mapping",
    "predictions_file",
    "read_user_text",
    "remove_stale_temporaries",
    "replace_folder",
    "resolve_checkpoint",
    "staging_folder",
    "write_json_atomic",
    "write_text_atomic",
]
