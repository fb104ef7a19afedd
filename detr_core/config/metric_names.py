"""Every metric a run reports, by one name each everywhere (`eval_`-prefixed in evaluations,
bare in `test_metrics.json`; `ema_*` of averaged weights), and which direction is better.
"""

from __future__ import annotations

import math
from typing import Literal

Mode = Literal["min", "max"]

EVAL_PREFIX = "eval_"

#: DETR's loss terms, averaged over the evaluation set.
LOSS_TERMS = ("loss_ce", "loss_bbox", "loss_iou", "cardinality_error")

#: Detection metrics of a set of images (evaluation and test alike).
DETECTION_METRICS = (
    "map", "map_50", "map_75", "recall", "precision", "iou_mean", "iou_std", "center_error_px",
    "center_error_px_std", "missed", "num_gt",
)

METRICS = ("loss", *LOSS_TERMS, *DETECTION_METRICS)
EMA_PREFIX = "ema_"

#: Metrics a search may optimise (`num_gt` is a count); `eval_ema_*` ones need `ema:`.
SELECTABLE_EVAL_METRICS = tuple(EVAL_PREFIX + prefix + name for prefix in ("", EMA_PREFIX)
                                for name in METRICS if name != "num_gt")

HIGHER_IS_BETTER = frozenset({"map", "map_50", "map_75", "recall", "precision", "iou_mean"})

DEFAULT_METRIC = "eval_loss_bbox"

#: Test-split metrics shown in the report's tables, in this order (`per_class_ap` apart).
TEST_TABLE_METRICS = (
    "map_50", "recall", "precision", "map", "map_75", "iou_mean", "iou_std", "center_error_px",
    "center_error_px_std",
)


def eval_name(metric: str) -> str:
    """`loss_bbox` -> `eval_loss_bbox` (unchanged if prefixed already)."""
    return metric if metric.startswith(EVAL_PREFIX) else EVAL_PREFIX + metric


def bare_name(metric: str) -> str:
    """`eval_loss_bbox` -> `loss_bbox`."""
    return metric.removeprefix(EVAL_PREFIX)


def is_ema_metric(metric: str) -> bool:
    """`eval_ema_map_50`, `ema_map_50`: a metric of the averaged weights."""
    return bare_name(metric).startswith(EMA_PREFIX)


def natural_mode(metric: str) -> Mode:
    """`max` for metrics where larger is better, else `min`."""
    return "max" if bare_name(metric).removeprefix(EMA_PREFIX) in HIGHER_IS_BETTER else "min"


def is_better(value: float | None, best: float | None, mode: str) -> bool:
    """`value` beats `best` under `mode`; a missing or non-finite value never wins."""
    if value is None or not math.isfinite(value):
        return False
    if best is None or not math.isfinite(best):
        return True
    return value < best if mode == "min" else value > best
