"""The running search: the CLI (`cli`), the driver that starts Ray and runs the Tuner
(`driver`), the finalists stage after the search (`finalists`), the console (`console`),
Ctrl-C / SIGTERM (`interrupt`), `--time-budget` (`time_budget`), experiment names (`naming`)
and the command that continues a search (`continue_command`). `search/run.py` is its entry point.

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`, `search.results`,
`search.lineage`, `search.resume`; `detr_core`.
"""
