"""The space file: YAML in, `SearchSpec` and Tune param space out (`spec`), with its
distributions, recipe-relative ranges, ASHA budget, Optuna samplers and `preflight` checks.

Imports: `search.store`, `search.cluster`; `detr_core`.
"""
