"""One trial: the Tune trainable with its run config, output and scratch folder (`trainable`),
how it ended (`status`), its data on its node (`node_data`) and the ASHA-aware `searcher`.

Imports: `search.store`, `search.cluster`, `search.space`; `detr_core`.
"""
