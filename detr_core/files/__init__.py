"""Files and errors: the lowest layer. The one error type a CLI turns into one line and
exit 2 (`errors`), reading user text files (`text_files`) and YAML (`yaml_io`), atomic
writes (`atomic_files`), the CLI argument parser that reports like the rest
(`cli_parser`), what a run writes where (`run_layout`) and the shipped `builtin:`
checkpoints (`builtin_models`).

Imports: the standard library and third-party packages only; nothing of detr_core.
"""
