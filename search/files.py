"""Reading and atomically writing the plain files of an experiment folder.

Every output of the export is written to a temporary file beside its target and renamed into
place, so a crash never leaves a truncated REPORT.md, trials.csv or best_config.yaml. On an
object store (`search.storage.UriPath`) a file is written in one upload, which is atomic too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from search.storage import ExperimentPath, UriPath
from search.values import json_safe


def read_json(path: ExperimentPath) -> Any:
    """The parsed JSON file, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def temp_path(path: Path) -> Path:
    """The hidden temporary sibling a file is written to before it replaces `path`."""
    return path.with_name(f".{path.name}.tmp")


def write_text_atomic(path: ExperimentPath, text: str) -> ExperimentPath:
    """Write `text` to `path` in one rename (one upload on a storage URI)."""
    if isinstance(path, UriPath):
        path.write_text(text)
        return path
    tmp = temp_path(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


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
