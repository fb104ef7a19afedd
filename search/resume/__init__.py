"""Resuming an interrupted search: the saved Tune state repaired before `Tuner.restore`.

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`, `search.results`,
`search.lineage`; `detr_core`.
"""
