"""Resuming an interrupted search: the saved Tune state repaired before `Tuner.restore`
(`state`; `checkpoints` re-points trials whose newest checkpoint Tune had deleted,
through Ray's private `_TrainingRunMetadata`, checked against Ray 2.6x).

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`, `search.results`;
`detr_core` through its public names.

Public names (other packages import these, not the modules; each is imported on first use):
`repair_saved_state`.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module of this package that defines it
_HOME = {
    "repair_saved_state": "state",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use: importing the package stays cheap
    (no Ray or torch for a dry run) and no import cycle can arise through it."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value
