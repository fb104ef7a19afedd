"""Writing output files and folders so that a crash never leaves a truncated one.

Every writer of a file someone reads later (best_config.yaml, trials.csv, REPORT.md,
test_metrics.json, best_step.json, best_model/) goes through here: the content is written to a
hidden temporary sibling, flushed to disk, and renamed over the target in one step. A process
killed at any moment leaves either the old complete file or the new complete one, at worst
plus a stale `.<name>.tmp-<pid>` that the next write of the same file replaces
(`remove_stale_temporaries` sweeps them).

Folders cannot be swapped in one rename when the target exists: `replace_folder` moves the old
one aside first, so a crash in between leaves no target at all (and the old copy beside it),
never a half-copied one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

TEMP_MARK = ".tmp-"


def temp_path(path: Path) -> Path:
    """The hidden temporary sibling this process writes `path` to before renaming it."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` in one rename (flushed to disk first)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` in one rename."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    """`data` as JSON in one rename (callers make NaN JSON-safe first if they need to)."""
    return write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def staging_folder(target: Path) -> Path:
    """A fresh hidden folder beside `target` to build its new content in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}{TEMP_MARK}", dir=target.parent))


def replace_folder(staging: Path, target: Path) -> Path:
    """Put the complete folder `staging` in place of `target` (see the module docstring)."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old{TEMP_MARK}", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def remove_stale_temporaries(folder: Path, name: str = "") -> None:
    """Delete what a killed writer of `folder/name` left: `.<name>.tmp-*`, `.<name>.old.tmp-*`
    (every such leftover in `folder` when `name` is empty)."""
    for stale in folder.glob(f".{name}*{TEMP_MARK}*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
