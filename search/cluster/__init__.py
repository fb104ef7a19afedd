"""The local Ray cluster a search starts and nobody else's: marking its processes
(`orphans`), the watchdog that ends them when the driver dies (`watchdog`) and the
cluster itself (`local_cluster`).

Imports: `search.store`; `detr_core` through its public names.

Public names (other packages import these, not the modules; each is imported on first use):
`LocalCluster`.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module of this package that defines it
_HOME = {
    "LocalCluster": "local_cluster",
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
