"""The running search: the CLI, experiment names and the command that continues a search
(`cli`), the driver that starts Ray and runs the Tuner (`driver`), the finalists stage
(`finalists`), the console (`console`), Ctrl-C / SIGTERM (`interrupt`) and `--time-budget`
(`time_budget`). `search/run.py` is its entry point.

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`, `search.results`,
`search.lineage`, `search.resume`; `detr_core`.
"""
