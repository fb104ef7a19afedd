"""Files and errors, the lowest layer: the one error type a CLI turns into one line and exit 2,
and the argument parser that reports like it (`errors`); user text, YAML, atomic writes and
what a run writes where (`file_io`); the shipped `builtin:` checkpoints (`builtin_models`).

Imports: the standard library and third-party packages only; nothing of detr_core.
"""
