"""Afterwards: trials read back (`reading`), the winner, its test evaluation and best model
(`winner`), the finalists stage (`finalists`), trials.csv (`trials_csv`), plots (`plots`),
importances (`importance`), REPORT.md (`report`), the export that writes them all (`export`),
TensorBoard HParams (`tensorboard_hparams`), warm-start trials (`warm_trials`) and COMPARE.md
(`compare`).

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`; `detr_core`.
"""
