"""Every metric a run reports, by one name each, and which direction is better.

The same names are used everywhere a metric appears: the Trainer's evaluation (with the
`eval_` prefix the HF Trainer adds), Tune results, `test_metrics.json` (without the prefix),
trials.csv and REPORT.md. Detection quality is read from `map_50`, `recall` and `precision`
(duplicates show there); `iou_mean` and the centre error are the diary's localisation numbers
over the pairs that were found. A run with averaged weights (`ema:`) reports every metric a
second time for them, as `ema_*` (`eval_ema_map_50`).
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

#: Every metric an evaluation reports, without prefix.
METRICS = ("loss", *LOSS_TERMS, *DETECTION_METRICS)

#: The same metrics of the averaged weights (a run with `ema:`), evaluated beside the raw ones.
EMA_PREFIX = "ema_"
EMA_METRICS = tuple(EMA_PREFIX + name for name in METRICS)

#: Every metric an evaluation reports, as the Trainer (and Tune) name it.
EVAL_METRICS = tuple(EVAL_PREFIX + name for name in METRICS)
EVAL_EMA_METRICS = tuple(EVAL_PREFIX + name for name in EMA_METRICS)

#: Metrics a search may optimise (`experiment.metric`); `num_gt` is a count, not a score.
#: The `eval_ema_*` ones need averaged weights in the run (`ema:`).
SELECTABLE_EVAL_METRICS = tuple(m for m in (*EVAL_METRICS, *EVAL_EMA_METRICS)
                                if not m.endswith("num_gt"))

#: Metrics where a larger value is better; every other metric is better when smaller.
HIGHER_IS_BETTER = frozenset({"map", "map_50", "map_75", "recall", "precision", "iou_mean"})

DEFAULT_METRIC = "eval_loss_bbox"

#: Test-split metrics shown in the report's tables, in this order (`per_class_ap` apart).
TEST_TABLE_METRICS = (
    "map_50", "recall", "precision", "map", "map_75", "iou_mean", "iou_std", "center_error_px",
    "center_error_px_std",
)


def eval_name(metric: str) -> str:
    """`loss_bbox` -> `eval_loss_bbox`; a name that has the prefix already is unchanged."""
    return metric if metric.startswith(EVAL_PREFIX) else EVAL_PREFIX + metric


def bare_name(metric: str) -> str:
    """`eval_loss_bbox` -> `loss_bbox`."""
    return metric.removeprefix(EVAL_PREFIX)


def is_ema_metric(metric: str) -> bool:
    """True for a metric of the averaged weights (`eval_ema_map_50`, `ema_map_50`)."""
    return bare_name(metric).startswith(EMA_PREFIX)


def natural_mode(metric: str) -> Mode:
    """`max` for metrics where larger is better (mAP, recall, precision, IoU), else `min`."""
    return "max" if bare_name(metric).removeprefix(EMA_PREFIX) in HIGHER_IS_BETTER else "min"


def is_better(value: float | None, best: float | None, mode: str) -> bool:
    """True when `value` beats `best` under `mode` ("min" or "max").

    A missing or non-finite value never wins; anything finite beats a missing best.
    """
    if value is None or not math.isfinite(value):
        return False
    if best is None or not math.isfinite(best):
        return True
    return value < best if mode == "min" else value > best
