"""Detector outputs and targets -> per-image boxes in original pixels, and detection metrics.

Decoding (training's evaluations, the test report, `predict`) scores as the family's
`post_process_object_detection` does (tested against it): DETR (`softmax`) one detection a
query, its most likely real class; the `sigmoid` families every (query, class) pair, the top-k
kept. `coco_map` is COCOeval (torchmetrics on pycocotools); recall, precision and localisation
count confident detections. Crowd regions are never objects to find, and a detection matching
nothing but covering one of its class is ignored, as COCOeval does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_convert, box_iou

from detr_core.model.families import Family
from detr_core.model.losses import box_centres, to_original_pixels


@dataclass
class ImageBoxes:
    """One image's xyxy boxes in original pixels, labels, scores (None: targets), crowd regions."""

    image_id: int
    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor | None = None
    crowd_boxes: torch.Tensor | None = None
    crowd_labels: torch.Tensor | None = None


def _tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def _placed(boxes: torch.Tensor, label: dict[str, Any]) -> dict[str, Any]:
    """The image id of a collated `label`, and `boxes` in its original pixels."""
    return {"image_id": int(_tensor(label["image_id"]).reshape(-1)[0]),
            "boxes": to_original_pixels(boxes, *(_tensor(label[key]) for key in
                                                 ("size", "resized_size", "orig_size")))}


def decode_targets(label_dicts: list[dict[str, Any]]) -> list[ImageBoxes]:
    """Collated `labels` (tensors or numpy) -> ground-truth boxes in original pixels."""
    decoded = []
    for label in label_dicts:
        crowd = label.get("crowd_boxes")
        decoded.append(ImageBoxes(
            **_placed(_tensor(label["boxes"]).float().reshape(-1, 4), label),
            labels=_tensor(label["class_labels"]).long().reshape(-1),
            crowd_boxes=None if crowd is None else _tensor(crowd).float().reshape(-1, 4),
            crowd_labels=None if crowd is None else
            _tensor(label["crowd_labels"]).long().reshape(-1)))
    return decoded


def scored_queries(logits: torch.Tensor, boxes: torch.Tensor, family: Family
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scores, labels, boxes) per image, as the family's post-processing ranks them."""
    if family.scoring == "softmax":
        scores, labels = logits.softmax(-1)[..., :-1].max(-1)
        return scores, labels, boxes
    num_queries, num_classes = logits.shape[1], logits.shape[2]
    k = min(family.top_k or num_queries, num_queries * num_classes)
    scores, index = logits.sigmoid().flatten(1).topk(k, dim=-1)
    labels = index % num_classes
    queries = index // num_classes
    return scores, labels, boxes.gather(1, queries.unsqueeze(-1).expand(-1, -1, 4))


def decode_predictions(logits: Any, pred_boxes: Any, label_dicts: list[dict[str, Any]],
                       family: Family) -> list[ImageBoxes]:
    """Detections scored as `family` scores them; boxes mapped like the images' targets."""
    scores, labels, boxes = scored_queries(_tensor(logits).float(), _tensor(pred_boxes).float(),
                                           family)
    return [ImageBoxes(**_placed(boxes[i], label), labels=labels[i], scores=scores[i])
            for i, label in enumerate(label_dicts)]


def coco_map(predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes],
             class_names: Sequence[str], per_class: bool = True) -> dict[str, object]:
    """COCO box mAP family and, if `per_class`, per-class AP of the classes seen (it more than
    doubles an evaluation's time: torchmetrics evaluates once more per class)."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=per_class,
                                  backend="pycocotools")
    metric.update([{"boxes": p.boxes, "scores": p.scores, "labels": p.labels}
                   for p in predictions], [_with_crowd(t) for t in targets])
    result = metric.compute()
    metrics: dict[str, object] = {k: float(result[k]) for k in ("map", "map_50", "map_75")}
    if per_class:
        classes = result["classes"].reshape(-1).tolist()
        values = result["map_per_class"].reshape(-1).tolist()
        metrics["per_class_ap"] = {
            class_names[label]: float(value)
            for label, value in zip(classes, values, strict=True)
            if value >= 0 and 0 <= label < len(class_names)}
    return metrics


def _with_crowd(target: ImageBoxes) -> dict[str, torch.Tensor]:
    """A target for torchmetrics: objects, then crowd regions flagged `iscrowd`."""
    crowd = target.crowd_boxes if target.crowd_boxes is not None else torch.zeros(0, 4)
    crowd_labels = (target.crowd_labels if target.crowd_labels is not None
                    else torch.zeros(0, dtype=torch.long))
    return {"boxes": torch.cat([target.boxes.float(), crowd.float()]),
            "labels": torch.cat([target.labels.long(), crowd_labels.long()]),
            "iscrowd": torch.cat([torch.zeros(len(target.boxes), dtype=torch.long),
                                  torch.ones(len(crowd), dtype=torch.long)])}


def on_crowd(boxes: torch.Tensor, labels: torch.Tensor, target: ImageBoxes,
             iou_threshold: float = 0.5) -> torch.Tensor:
    """Which detections cover a crowd region of their class (COCOeval's crowd IoU)."""
    if target.crowd_boxes is None or len(target.crowd_boxes) == 0 or len(boxes) == 0:
        return torch.zeros(len(boxes), dtype=torch.bool)
    from pycocotools import mask as mask_utils

    crowd = target.crowd_boxes
    xywh = [box_convert(b.double(), "xyxy", "xywh").tolist() for b in (boxes, crowd)]
    overlap = torch.as_tensor(mask_utils.iou(*xywh, [1] * len(crowd))).reshape(len(boxes), -1)
    overlap[labels[:, None] != target.crowd_labels[None, :]] = -1.0
    return (overlap >= iou_threshold).any(dim=1)


def match_image(pred: ImageBoxes, target: ImageBoxes, score_threshold: float,
                iou_threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                     torch.Tensor]:
    """One image's confident detections by descending score, each claiming the free ground truth
    of its class with the highest IoU >= `iou_threshold` (COCO's greedy matching): (boxes,
    labels, hit, ignored: claims nothing but lies on a crowd region of its class)."""
    scores = pred.scores if pred.scores is not None else torch.ones(len(pred.boxes))
    keep = scores >= score_threshold
    order = torch.argsort(scores[keep], descending=True, stable=True)
    boxes, labels = pred.boxes[keep][order], pred.labels[keep][order]
    hit = torch.zeros(len(boxes), dtype=torch.bool)
    if len(target.boxes) and len(boxes):
        overlap = box_iou(boxes, target.boxes)
        overlap[labels[:, None] != target.labels[None, :]] = -1.0
        free = torch.ones(len(target.boxes), dtype=torch.bool)
        for index, row in enumerate(overlap):
            best_iou, best = row.masked_fill(~free, -1.0).max(dim=0)
            if best_iou >= iou_threshold:
                free[best] = False
                hit[index] = True
    ignored = ~hit & on_crowd(boxes, labels, target, iou_threshold)
    return boxes, labels, hit, ignored


def match_counts(predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes],
                 score_threshold: float, iou_threshold: float = 0.5) -> tuple[int, int, int]:
    """(matched, ground-truth boxes, confident detections not ignored) over all images."""
    matched = num_gt = num_detections = 0
    for pred, target in zip(predictions, targets, strict=True):
        num_gt += len(target.boxes)
        boxes, _, hit, ignored = match_image(pred, target, score_threshold, iou_threshold)
        matched += int(hit.sum())
        num_detections += len(boxes) - int(ignored.sum())
    return matched, num_gt, num_detections


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


def recall(predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes],
           score_threshold: float, iou_threshold: float = 0.5) -> float:
    """Matched ground-truth boxes / all ground-truth boxes (NaN when there is none)."""
    matched, num_gt, _ = match_counts(predictions, targets, score_threshold, iou_threshold)
    return _ratio(matched, num_gt)


def precision(predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes],
              score_threshold: float, iou_threshold: float = 0.5) -> float:
    """Matched confident detections / all confident detections (NaN when there is none)."""
    matched, _, num_detections = match_counts(predictions, targets, score_threshold,
                                              iou_threshold)
    return _ratio(matched, num_detections)


def threshold_sweep(predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes],
                    thresholds: Sequence[float]) -> list[dict[str, float]]:
    """Recall, precision and F1 at each score threshold, to choose the operating point (which
    boxes a user sees; mAP does not change) on validation data."""
    rows = []
    for threshold in thresholds:
        matched, num_gt, num_detections = match_counts(predictions, targets, threshold)
        rec, prec = _ratio(matched, num_gt), _ratio(matched, num_detections)
        f1 = 2 * rec * prec / (rec + prec) if rec == rec and prec == prec and rec + prec else \
            math.nan
        rows.append({"score_threshold": float(threshold), "recall": rec, "precision": prec,
                     "f1": f1, "detections": num_detections})
    return rows


def best_f1_threshold(rows: Sequence[dict[str, float]]) -> float | None:
    """The threshold of the highest F1 in a `threshold_sweep` (a tie: the higher, fewer boxes
    shown); None when no row has an F1."""
    best = max((r for r in rows if r["f1"] == r["f1"]),
               key=lambda r: (r["f1"], r["score_threshold"]), default=None)
    return None if best is None else best["score_threshold"]


def detection_metrics(predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes],
                      class_names: Sequence[str], score_threshold: float,
                      per_class: bool = True) -> dict[str, object]:
    """mAP family, per-class AP (if `per_class`), recall, precision and localisation."""
    matched, num_gt, num_detections = match_counts(predictions, targets, score_threshold)
    return {**coco_map(predictions, targets, class_names, per_class=per_class),
            "recall": _ratio(matched, num_gt), "precision": _ratio(matched, num_detections),
            **localisation(predictions, targets, score_threshold)}


def localisation(predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes],
                 score_threshold: float) -> dict[str, float]:
    """IoU and centre error (pixels) mean/std of each ground truth with its best-overlapping
    confident detection (`missed`: none overlaps)."""
    ious: list[torch.Tensor] = []
    errors: list[torch.Tensor] = []
    num_gt = 0
    for pred, target in zip(predictions, targets, strict=True):
        num_gt += len(target.boxes)
        boxes, _, _, ignored = match_image(pred, target, score_threshold)
        boxes = boxes[~ignored]  # a detection on a crowd region pairs with nothing
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

    def std(values: torch.Tensor) -> float:
        return float(values.std(unbiased=False)) if len(values) else math.nan

    return {"iou_mean": float(iou.mean()) if len(iou) else 0.0, "iou_std": std(iou),
            "center_error_px": float(err.mean()) if len(err) else math.nan,
            "center_error_px_std": std(err), "missed": float(num_gt - len(iou)),
            "num_gt": float(num_gt)}
