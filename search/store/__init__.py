"""Where it all lives: a local folder or any `pyarrow.fs` URI, atomic writes there, the names
of every file an experiment holds and the values read back, the Optuna study journal.

Imports: nothing of search; `detr_core`.
"""
