"""The local Ray cluster a search starts and nobody else's: marking its processes
(`orphans`), the watchdog that ends them when the driver dies (`watchdog`) and the
cluster itself (`local_cluster`).

Imports: `search.store`; `detr_core` through its public names.

Public names (other packages import these, not the modules; each is imported on first use):
`LocalCluster`.
"""

from __future__ import annotations

from search.store import lazy_public_names

#: public name -> the module of this package that defines it
_HOME = {
    "LocalCluster": "local_cluster",
}

__all__ = sorted(_HOME)

__getattr__ = lazy_public_names(__name__, _HOME, globals())
