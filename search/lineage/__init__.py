"""Searches that build on each other, as the diary's versions did: `--warm-start` from earlier
experiments (`warm_start`), by the rules of which earlier trial fits a new space (`fitting`).
A finished search given more trials (`--resume --num-samples N`) is the running search's
(`search.running.driver`); the comparison of a sequence of searches is an export
(`search.results.compare`).

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`, `search.results`;
`detr_core` through its public names.

Public names (other packages import these, not the modules; each is imported on first use):
`fit_trial`, `fits`, `plan_warm_start`, `search_difference`, `startup_note`.
"""

from __future__ import annotations

from search.store import lazy_public_names

#: public name -> the module of this package that defines it
_HOME = {
    "fit_trial": "fitting",
    "fits": "fitting",
    "plan_warm_start": "warm_start",
    "search_difference": "warm_start",
    "startup_note": "warm_start",
}

__all__ = sorted(_HOME)

__getattr__ = lazy_public_names(__name__, _HOME, globals())
