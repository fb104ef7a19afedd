"""Searches that build on each other: `--warm-start` from earlier experiments (`warm_start`).

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`, `search.results`;
`detr_core`.
"""
