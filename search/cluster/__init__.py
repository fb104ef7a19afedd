"""The local Ray cluster a search starts and nobody else's: the cluster and whether a trial
fits on one of its nodes (`local_cluster`), its processes' marks (`orphans`) and the watchdog
that ends them when the driver dies (`watchdog`).

Imports: `search.store`; `detr_core`.
"""
