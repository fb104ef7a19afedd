"""Detection metrics: COCO mAP family, recall, and the diary's localisation numbers.

- `coco_map`: mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP, computed by torchmetrics'
  `MeanAveragePrecision` on its pycocotools backend (so it *is* COCOeval; tested against it).
- `recall`: the share of ground-truth boxes a confident detection (score >= threshold) finds:
  detections are matched one-to-one to ground truth of the same class, greedily by score, at
  IoU >= 0.5. What a user means by "it finds the objects".
- `precision`: the share of confident detections that matched a ground-truth box in that same
  matching: duplicates and false alarms, which recall does not see.
- `localisation`: each ground-truth box is paired with its best-overlapping detection
  (score >= threshold, any class); over those pairs: IoU mean/std (the diary's "IOU mu/std")
  and the distance between box centres in original pixels, mean/std (the diary's "Detection
  Performance mu/std"). Ground truths no detection overlaps are counted as `missed`. These are
  numbers over the pairs found: a model that finds one object well scores a high IoU mean.
- `detection_metrics`: all of the above under their canonical names (`metric_names`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.ops import box_iou

from detr_core.boxes import box_centres
from detr_core.detections import ImageBoxes


def coco_map(
    predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes], class_names: Sequence[str]
) -> dict[str, object]:
    """COCO box mAP family and per-class AP (NaN-free: classes never seen get -1 -> omitted)."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True,
                                  backend="pycocotools")
    metric.update(
        [{"boxes": p.boxes, "scores": p.scores, "labels": p.labels} for p in predictions],
        [{"boxes": t.boxes, "labels": t.labels} for t in targets],
    )
    result = metric.compute()
    per_class = {}
    classes = result["classes"].reshape(-1).tolist()
    values = result["map_per_class"].reshape(-1).tolist()
    for label, value in zip(classes, values, strict=True):
        if value >= 0 and 0 <= label < len(class_names):
            per_class[class_names[label]] = float(value)
    return {
        "map": float(result["map"]),
        "map_50": float(result["map_50"]),
        "map_75": float(result["map_75"]),
        "per_class_ap": per_class,
    }


def match_counts(
    predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes], score_threshold: float,
    iou_threshold: float = 0.5,
) -> tuple[int, int, int]:
    """(matched, ground-truth boxes, confident detections) over all images.

    Per image, detections with score >= `score_threshold` are taken in descending score; each
    claims the unmatched ground-truth box of its class with the highest IoU, if that IoU is
    >= `iou_threshold` (COCO's greedy matching, at one threshold). A second detection of an
    object already claimed matches nothing: it is what `precision` counts against.
    """
    matched = num_gt = num_detections = 0
    for pred, target in zip(predictions, targets, strict=True):
        num_gt += len(target.boxes)
        if len(pred.boxes) == 0:
            continue
        scores = pred.scores if pred.scores is not None else torch.ones(len(pred.boxes))
        keep = scores >= score_threshold
        num_detections += int(keep.sum())
        if len(target.boxes) == 0:
            continue
        order = torch.argsort(scores[keep], descending=True, stable=True)
        boxes, labels = pred.boxes[keep][order], pred.labels[keep][order]
        if len(boxes) == 0:
            continue
        overlap = box_iou(boxes, target.boxes)
        overlap[labels[:, None] != target.labels[None, :]] = -1.0
        free = torch.ones(len(target.boxes), dtype=torch.bool)
        for row in overlap:
            candidates = torch.where(free, row, torch.full_like(row, -1.0))
            best_iou, best = candidates.max(dim=0)
            if best_iou >= iou_threshold:
                free[best] = False
                matched += 1
    return matched, num_gt, num_detections


def recall(
    predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes], score_threshold: float,
    iou_threshold: float = 0.5,
) -> float:
    """Matched ground-truth boxes / all ground-truth boxes (NaN when there is none)."""
    matched, num_gt, _ = match_counts(predictions, targets, score_threshold, iou_threshold)
    return matched / num_gt if num_gt else math.nan


def precision(
    predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes], score_threshold: float,
    iou_threshold: float = 0.5,
) -> float:
    """Matched confident detections / all confident detections (NaN when there is none).

    Duplicates (two confident boxes on one object) and boxes on background lower it; recall
    alone never shows them.
    """
    matched, _, num_detections = match_counts(predictions, targets, score_threshold,
                                              iou_threshold)
    return matched / num_detections if num_detections else math.nan


def detection_metrics(
    predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes],
    class_names: Sequence[str], score_threshold: float,
) -> dict[str, object]:
    """mAP family, per-class AP, recall, precision and localisation, by canonical names."""
    metrics = coco_map(predictions, targets, class_names)
    matched, num_gt, num_detections = match_counts(predictions, targets, score_threshold)
    metrics["recall"] = matched / num_gt if num_gt else math.nan
    metrics["precision"] = matched / num_detections if num_detections else math.nan
    metrics.update(localisation(predictions, targets, score_threshold))
    return metrics


def localisation(
    predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes], score_threshold: float
) -> dict[str, float]:
    """IoU and centre error of each ground truth with its best-matching confident detection."""
    ious: list[torch.Tensor] = []
    errors: list[torch.Tensor] = []
    num_gt = 0
    for pred, target in zip(predictions, targets, strict=True):
        num_gt += len(target.boxes)
        keep = pred.scores >= score_threshold if pred.scores is not None else slice(None)
        boxes = pred.boxes[keep]
        if len(target.boxes) == 0 or len(boxes) == 0:
            continue
        overlap = box_iou(target.boxes, boxes)
        best_iou, best = overlap.max(dim=1)
        found = best_iou > 0
        ious.append(best_iou[found])
        distance = box_centres(target.boxes[found]) - box_centres(boxes[best[found]])
        errors.append(distance.norm(dim=1))
    iou = torch.cat(ious) if ious else torch.zeros(0)
    err = torch.cat(errors) if errors else torch.zeros(0)
    return {
        "iou_mean": float(iou.mean()) if len(iou) else 0.0,
        "iou_std": _std(iou),
        "center_error_px": _mean(err),
        "center_error_px_std": _std(err),
        "missed": float(num_gt - len(iou)),
        "num_gt": float(num_gt),
    }


def _mean(values: torch.Tensor) -> float:
    return float(values.mean()) if len(values) else math.nan


def _std(values: torch.Tensor) -> float:
    return float(values.std(unbiased=False)) if len(values) else math.nan
