"""The local Ray cluster a search starts and nobody else's, its processes' marks and the
watchdog that ends them when the driver dies; every private use of Ray (`ray_internals`).

Imports: `search.store`; `detr_core`.
"""
