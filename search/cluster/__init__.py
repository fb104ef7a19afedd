"""The local Ray cluster a search starts and nobody else's: marking its processes
(`orphans`), the watchdog that ends them when the driver dies (`watchdog`), the
cluster itself (`local_cluster`), and whether a trial fits on any of its nodes (`trial_fit`).

Imports: `search.store`; `detr_core` through its public names.

Public names (other packages import these, not the modules; each is imported on first use):
`LocalCluster`, `check_trials_fit`.
"""

from __future__ import annotations

from search.store import lazy_public_names

#: public name -> the module of this package that defines it
_HOME = {
    "LocalCluster": "local_cluster",
    "check_trials_fit": "trial_fit",
}

__all__ = sorted(_HOME)

__getattr__ = lazy_public_names(__name__, _HOME, globals())
