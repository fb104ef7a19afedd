"""Afterwards: trials read back, the winner, finalists, trials.csv, plots, REPORT.md, the
export, TensorBoard HParams, warm-start trials and COMPARE.md.

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`; `detr_core`.
"""
