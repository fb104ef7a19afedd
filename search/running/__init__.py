"""The running search: CLI and experiment names, the driver, the finalists stage, the console,
Ctrl-C / SIGTERM and `--time-budget`; `search/run.py` is its entry point.

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`, `search.results`,
`search.lineage`, `search.resume`; `detr_core`.
"""
