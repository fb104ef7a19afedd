"""Where it all lives: experiment locations on a local folder or any `pyarrow.fs` URI
(`storage`), atomic writes and JSON reads there (`files`), the names of every file an
experiment holds (`layout`), values read back from those files (`values`) and the Optuna
study journal (`study_journal`). A new storage backend is whatever `pyarrow.fs` resolves.

Imports: nothing of search; `detr_core`.
"""
