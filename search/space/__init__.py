"""The space file: YAML in, `SearchSpec` and Tune param space out (`spec`), distributions
(`distributions`), ranges relative to a checkpoint's recipe (`relative_ranges`), ASHA's budget
in optimizer steps (`budget`), the Optuna samplers (`samplers`) and the checks of what a space
points to (`preflight`). A new searchable hyperparameter needs no code here.

Imports: `search.store`, `search.cluster`; `detr_core`.
"""
