"""Afterwards: trials read back, the winner and its model, the finalists stage, trials.csv,
plots, importances, REPORT.md, the export that writes them all, TensorBoard HParams,
warm-start trials and COMPARE.md.

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`; `detr_core`.
"""
