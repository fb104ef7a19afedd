"""Reading and atomically writing the plain files of an experiment folder.

Every output of the export is written to a temporary file beside its target and renamed into
place, so a crash never leaves a truncated REPORT.md, trials.csv or best_config.yaml.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from search.values import json_safe


def read_json(path: Path) -> Any:
    """The parsed JSON file, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def temp_path(path: Path) -> Path:
    """The hidden temporary sibling a file is written to before it replaces `path`."""
    return path.with_name(f".{path.name}.tmp")


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` in one rename."""
    tmp = temp_path(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_json_atomic(path: Path, data: Any) -> Path:
    """`data` as indented JSON (NaN written as null) in one rename."""
    return write_text_atomic(path, json.dumps(json_safe(data), indent=2, default=float) + "\n")


def display_path(path: Path) -> str:
    """`path` relative to the working directory when inside it (results/iou/...), else absolute."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(resolved)
