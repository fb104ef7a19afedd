"""How values look in REPORT.md and on charts: table cells, Markdown tables, mean ± std."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def label(value: Any) -> str:
    """A value as YAML writes it (`true` / `false`), else `str`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def fmt(value: Any, spec: str = ".4g", missing: str = "") -> str:
    """A table cell: floats to 4 significant digits, booleans as YAML writes them."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, float):
        return format(value, spec)
    return label(value)


def mean_std(values: Sequence[float]) -> str:
    """`mean ± sample std` (std 0 for a single value), n/a without values."""
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4g} ± {std:.2g}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; `|` inside cells is escaped."""
    def cells(values: Sequence[str]) -> str:
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

    return "\n".join([cells(headers), cells(["---"] * len(headers)), *map(cells, rows)])
