"""Config: the run config's schema, YAML in and out and its dotted keys (`run_config`),
`TrainingArguments` from YAML with the ranges a run depends on (`training_args`), and every
metric's one name and direction (`metric_names`).

Imports: `detr_core.files`.
"""
