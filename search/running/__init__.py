"""The running search: the CLI (`cli`), the driver that starts Ray and runs the Tuner
(`driver`), the finalists stage after the search (`finalists`), the console (`console`),
Ctrl-C / SIGTERM (`interrupt`), `--time-budget` (`time_budget`), experiment names (`naming`)
and the command that continues a search (`continue_command`). `search/run.py` is its entry point.

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`, `search.results`,
`search.lineage`, `search.resume`; `detr_core` through its public names.

Public names (other packages import these, not the modules; each is imported on first use):
`can_resume`, `choose_experiment`, `describe`, `parse_args`, `quiet_libraries`,
`resume_command`, `run_search`, `SearchInterrupted`,
`SearchInterrupts`, `SearchOptions`, `spec_overrides`.
"""

from __future__ import annotations

from search.store import lazy_public_names

#: public name -> the module of this package that defines it
_HOME = {
    "SearchInterrupted": "interrupt",
    "SearchInterrupts": "interrupt",
    "SearchOptions": "driver",
    "can_resume": "continue_command",
    "choose_experiment": "naming",
    "describe": "cli",
    "parse_args": "cli",
    "quiet_libraries": "driver",
    "resume_command": "continue_command",
    "run_search": "driver",
    "spec_overrides": "cli",
}

__all__ = sorted(_HOME)

__getattr__ = lazy_public_names(__name__, _HOME, globals())
