"""Where it all lives: experiment locations on a local folder or any `pyarrow.fs` URI, atomic
writes and JSON reads there (`storage`), the names of every file an experiment holds and the
values read back from them (`layout`) and the Optuna study journal (`study_journal`).

Imports: nothing of search; `detr_core`.
"""
