"""The local Ray cluster a search starts and nobody else's: marking its processes
(`orphans`), the watchdog that ends them when the driver dies (`watchdog`), the
cluster itself (`local_cluster`), and whether a trial fits on any of its nodes (`trial_fit`).

Imports: `search.store`; `detr_core`.
"""
