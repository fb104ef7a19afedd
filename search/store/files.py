"""Reading and atomically writing the plain files of an experiment folder.

Every output of the export is written to a temporary file beside its target and renamed into
place (`detr_core.files.atomic_files`, the one home of that rule), so a crash never leaves a
truncated REPORT.md, trials.csv or best_config.yaml. On an object store
(`search.store.storage.UriPath`) a file is written in one upload, which is atomic too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detr_core.files import atomic_files
from search.store.storage import ExperimentPath, UriPath
from search.store.values import json_safe

__all__ = ["display_path", "read_json", "write_bytes_atomic", "write_json_atomic",
           "write_text_atomic"]


def read_json(path: ExperimentPath) -> Any:
    """The parsed JSON file, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_bytes_atomic(path: ExperimentPath, data: bytes) -> ExperimentPath:
    """Write `data` to `path` in one rename (one upload on a storage URI)."""
    if isinstance(path, UriPath):
        path.write_bytes(data)
        return path
    return atomic_files.write_bytes_atomic(path, data)


def write_text_atomic(path: ExperimentPath, text: str) -> ExperimentPath:
    """Write `text` (UTF-8) to `path` in one rename (one upload on a storage URI)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: ExperimentPath, data: Any) -> ExperimentPath:
    """`data` as indented JSON (NaN written as null) in one rename."""
    return write_text_atomic(path, json.dumps(json_safe(data), indent=2, default=float) + "\n")


def display_path(path: ExperimentPath) -> str:
    """`path` relative to the working directory when inside it (results/iou/...), else absolute;
    a storage URI as it is."""
    if isinstance(path, UriPath):
        return str(path)
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(resolved)
