"""The space file: YAML in (`spec_loading`, `experiment_section`, `space_section`), the
`SearchSpec` (`spec`), distributions (`distributions`), ranges stated relative to the
checkpoint's recipe (`relative_ranges`; per trial when the model is searched:
`per_trial_recipes`), ASHA's budget in optimizer steps (`budget`), the points tried first
(`start_points`), the Tune param space (`tune_space`) and the checks of what a space points
to (`preflight`). A new searchable hyperparameter needs no code here when it is a run-config
key or a `TrainingArguments` field.

Imports: `search.store`, `search.cluster`; `detr_core`.
"""
