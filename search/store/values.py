"""Numbers read back from plain files (result.json, progress.csv, checkpoint metadata).

What Ray Tune writes is JSON or CSV text: a metric may be missing, NaN, a string, a bool.
These helpers turn any of that into a finite number or None, so no caller has to guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def as_float(value: Any) -> float | None:
    """A finite float, or None for missing / NaN / inf / non-numbers (bools excluded)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_int(value: Any) -> int | None:
    """`as_float` truncated to an int (steps are written as floats by some writers)."""
    number = as_float(value)
    return int(number) if number is not None else None


def parse_scalar(text: str | None) -> Any:
    """A progress.csv cell back to int / float / bool / str (None when empty)."""
    if text is None or text == "":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def json_safe(value: Any) -> Any:
    """NaN / inf -> None (null), recursively: strict JSON readers reject `NaN`."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
