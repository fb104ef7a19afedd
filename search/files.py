"""Reading and atomically writing the plain files of an experiment folder.

Every output of the export is written to a temporary file beside its target and renamed into
place (`detr_core.atomic_files`, the one home of that rule), so a crash never leaves a
truncated REPORT.md, trials.csv or best_config.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detr_core import atomic_files
from detr_core.atomic_files import write_text_atomic
from search.values import json_safe

__all__ = ["display_path", "read_json", "write_json_atomic", "write_text_atomic"]


def read_json(path: Path) -> Any:
    """The parsed JSON file, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json_atomic(path: Path, data: Any) -> Path:
    """`data` as indented JSON (NaN written as null) in one rename."""
    return atomic_files.write_text_atomic(
        path, json.dumps(json_safe(data), indent=2, default=float) + "\n")


def display_path(path: Path) -> str:
    """`path` relative to the working directory when inside it (results/iou/...), else absolute."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(resolved)
