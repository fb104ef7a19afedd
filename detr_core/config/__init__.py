"""Config and YAML: one run as typed, validated dataclasses (`run_config`), the dotted
keys a search may set and their types (`config_keys`), `TrainingArguments` from YAML
with the ranges a run depends on (`training_args`), and every metric's one name and
direction (`metric_names`).

Imports: `detr_core.files`.
"""
