"""One trial: the Tune function trainable (`trainable`), the run config a trial trains
with (`trial_config`), its console output and scratch folder (`trial_output`,
`trial_workdir`), how it ended (`status`), its dataset on the node that trains it
(`node_data`) and the searcher that tells Optuna what ASHA did (`searcher`).

Imports: `search.store`, `search.cluster`, `search.space`; `detr_core`.
"""
