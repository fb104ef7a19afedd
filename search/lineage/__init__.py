"""Searches that build on each other, as the diary's versions did: `--warm-start` from earlier
experiments, by the rules of which earlier trial fits a new space (`warm_start`).

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`, `search.results`;
`detr_core`.
"""
