"""Config: the run config (`run_config`), `TrainingArguments` from YAML (`training_args`), and
every metric's one name and direction (`metric_names`).

Imports: `detr_core.files`.
"""
