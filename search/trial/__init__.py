"""One trial: the Tune function trainable with its run config, output and scratch folder
(`trainable`), how it ended (`status`), its dataset on the node that trains it (`node_data`)
and the searcher that tells Optuna what ASHA did (`searcher`).

Imports: `search.store`, `search.cluster`, `search.space`; `detr_core`.
"""
