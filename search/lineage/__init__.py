"""Searches that build on each other, as the diary's versions did: `--warm-start` from earlier
experiments (`warm_start`), by the rules of which earlier trial fits a new space (`fitting`).
A finished search given more trials (`--resume --num-samples N`) is the running search's
(`search.running.driver`); the comparison of a sequence of searches is an export
(`search.results.compare`).

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`, `search.results`;
`detr_core`.
"""
