"""Config and YAML: one run as typed, validated dataclasses (`run_config`), the dotted
keys a search may set and their types (`config_keys`), `TrainingArguments` from YAML
with the ranges a run depends on (`training_args`), and every metric's one name and
direction (`metric_names`).

Imports: `detr_core.files`.

Public names (other packages import these, not the modules): `apply_overrides`, `bare_name`,
`build_training_args`, `config_override_type`, `DataConfig`, `DEFAULT_CONFIG_PATH`,
`DEFAULT_METRIC`, `detr_config_fields`, `EMA_PREFIX`, `EmaConfig`, `EVAL_METRICS`, `eval_name`,
`EXCLUSIVE_KEYS`, `FamilyName`, `is_better`, `is_ema_metric`, `is_section`, `key_type`,
`load_default_run_config`, `load_run_config`, `LOSS_TERMS`, `METRICS`, `ModelConfig`,
`natural_mode`, `PATH_KEYS`, `resolve_path_value`, `resolve_paths`, `run_config_from_dict`,
`run_config_to_dict`, `RunConfig`, `save_run_config`, `SELECTABLE_EVAL_METRICS`, `SplitPaths`,
`strip_optional`, `SyntheticConfig`, `TEST_TABLE_METRICS`, `touches`, `training_arg_default`.
"""

from __future__ import annotations

from detr_core.config.config_keys import (
    EXCLUSIVE_KEYS,
    config_override_type,
    detr_config_fields,
    is_section,
    key_type,
    strip_optional,
    touches,
)
from detr_core.config.config_paths import PATH_KEYS, resolve_path_value, resolve_paths
from detr_core.config.metric_names import (
    DEFAULT_METRIC,
    EMA_PREFIX,
    EVAL_METRICS,
    LOSS_TERMS,
    METRICS,
    SELECTABLE_EVAL_METRICS,
    TEST_TABLE_METRICS,
    bare_name,
    eval_name,
    is_better,
    is_ema_metric,
    natural_mode,
)
from detr_core.config.run_config import (
    DEFAULT_CONFIG_PATH,
    DataConfig,
    EmaConfig,
    FamilyName,
    ModelConfig,
    RunConfig,
    SplitPaths,
    SyntheticConfig,
    apply_overrides,
    load_default_run_config,
    load_run_config,
    run_config_from_dict,
    run_config_to_dict,
    save_run_config,
)
from detr_core.config.training_args import build_training_args, training_arg_default

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_METRIC",
    "EMA_PREFIX",
    "EVAL_METRICS",
    "EXCLUSIVE_KEYS",
    "LOSS_TERMS",
    "METRICS",
    "PATH_KEYS",
    "SELECTABLE_EVAL_METRICS",
    "TEST_TABLE_METRICS",
    "DataConfig",
    "EmaConfig",
    "FamilyName",
    "ModelConfig",
    "RunConfig",
    "SplitPaths",
    "SyntheticConfig",
    "apply_overrides",
    "bare_name",
    "build_training_args",
    "config_override_type",
    "detr_config_fields",
    "eval_name",
    "is_better",
    "is_ema_metric",
    "is_section",
    "key_type",
    "load_default_run_config",
    "load_run_config",
    "natural_mode",
    "resolve_path_value",
    "resolve_paths",
    "run_config_from_dict",
    "run_config_to_dict",
    "save_run_config",
    "strip_optional",
    "touches",
    "training_arg_default",
]
