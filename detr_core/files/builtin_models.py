"""Checkpoints shipped inside the package, named `builtin:<name>` in a run config: never an
absolute path, so the same YAML works from any working directory, install or machine; the name
becomes a folder only where the model is built. `tiny-shapes` (~0.46 M parameters, pretrained by
`python -m detr_core.pretrain`) is what the embedded default fine-tunes.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from detr_core.files.errors import UserInputError

PREFIX = "builtin:"
#: What `save_pretrained` writes, all a shipped checkpoint folder holds.
CHECKPOINT_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def _root() -> Path:
    return Path(str(resources.files("detr_core") / "builtin"))


def builtin_names() -> list[str]:
    """Names of the shipped checkpoints (folders holding a config.json)."""
    root = _root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


def is_builtin(checkpoint: str | None) -> bool:
    """True for a `builtin:<name>` reference."""
    return isinstance(checkpoint, str) and checkpoint.startswith(PREFIX)


def builtin_problem(checkpoint: str) -> str | None:
    """Why `builtin:<name>` names no shipped checkpoint, or None when it does."""
    known = builtin_names()
    if checkpoint.removeprefix(PREFIX) in known:
        return None
    return (f"{checkpoint!r} is not a built-in checkpoint (known: "
            f"{', '.join(PREFIX + n for n in known) or 'none'})")


def resolve_checkpoint(checkpoint: str) -> str:
    """`builtin:<name>` -> the shipped folder on this machine; anything else unchanged."""
    if not is_builtin(checkpoint):
        return checkpoint
    if problem := builtin_problem(checkpoint):
        raise UserInputError(problem, key="model.checkpoint")
    return str(_root() / checkpoint.removeprefix(PREFIX))
