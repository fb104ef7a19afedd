"""Files and errors, the lowest layer: one-line user errors and the CLI parser (`errors`); user
text, YAML, atomic writes, a run's file layout (`file_io`); shipped checkpoints (`builtin_models`).

Imports: the standard library and third-party packages only; nothing of detr_core.
"""
