"""Which run-config values are file-system paths, and making them absolute.

Tune trials run in their own working directory, and a run YAML names data and checkpoint
folders relative to itself: every such value is made absolute once, when the file is read
(`load_run_config`) or when a search's values are merged into it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # run_config imports this module
    from detr_core.config.run_config import RunConfig

#: Dotted run-config keys whose string values are file-system paths (made absolute on load).
PATH_KEYS = (
    *(f"data.{split}.{part}" for split in ("train", "val", "test")
      for part in ("annotations", "images")),
    "data.synthetic.cache_dir",
    "model.checkpoint",
)


def is_local_checkpoint(checkpoint: str, base: Path) -> bool:
    """A `model.checkpoint` that names a folder (`./x`, `/x`, `~/x` or one that exists under
    `base`) rather than a Hub name such as `facebook/detr-resnet-50`."""
    return checkpoint.startswith((".", "/", "~")) or (base / checkpoint).exists()


def resolve_path_value(key: str, value: Any, base: Path) -> Any:
    """`value` of path key `key` made absolute against `base`; other values unchanged.

    A checkpoint that is a Hub name stays as it is (see `is_local_checkpoint`).
    """
    if key not in PATH_KEYS or not isinstance(value, str):
        return value
    if key == "model.checkpoint" and not is_local_checkpoint(value, base):
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def resolve_paths(cfg: RunConfig, base: Path) -> RunConfig:
    """Return a copy whose data paths (and a checkpoint that is a local folder) are absolute.

    Tune trials run in their own working directory, so every user path is made absolute once.
    """
    cfg = copy.deepcopy(cfg)
    for key in PATH_KEYS:
        *parents, leaf = key.split(".")
        node: Any = cfg
        for part in parents:
            node = getattr(node, part, None)
        if node is not None and getattr(node, leaf, None) is not None:
            setattr(node, leaf, resolve_path_value(key, getattr(node, leaf), base))
    return cfg
