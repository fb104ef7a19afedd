"""Resuming an interrupted search: the saved Tune state repaired before `Tuner.restore`
(`state`; `checkpoints` re-points trials whose newest checkpoint Tune had deleted,
through Ray's private `_TrainingRunMetadata`, checked against Ray 2.6x).

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`, `search.results`,
`search.lineage`; `detr_core` through its public names.

Public names (other packages import these, not the modules; each is imported on first use):
`repair_saved_state`.
"""

from __future__ import annotations

from search.store import lazy_public_names

#: public name -> the module of this package that defines it
_HOME = {
    "repair_saved_state": "state",
}

__all__ = sorted(_HOME)

__getattr__ = lazy_public_names(__name__, _HOME, globals())
