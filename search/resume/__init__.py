"""Resuming an interrupted search: the saved Tune state repaired before `Tuner.restore`
(`state`; `checkpoints` re-points trials whose newest checkpoint Tune had deleted,
through Ray's private `_TrainingRunMetadata`, checked against Ray 2.6x).

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`, `search.results`,
`search.lineage`; `detr_core`.
"""
