"""Afterwards: every trial read back from its folder (`reading`), the winner and its
evaluation (`winner`, `winner_eval`, `best_model`), the finalists stage's plan and outcome
(`finalists`), trials.csv, plots,
importances, REPORT.md and the export that writes them all (`trials_csv`, `plots`,
`importance`, `report`, `summary`, `formatting`, `export`), the HParams written to
TensorBoard (`tensorboard_hparams`), the warm-start trials a search was seeded with
(`warm_trials`, `warm_start.json`) and COMPARE.md over a sequence of searches (`compare`).

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`; `detr_core`.
"""
