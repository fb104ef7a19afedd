"""Detector outputs and targets -> per-image boxes in original pixels.

Shared by evaluation during training (`metrics.compute_metrics`), the test-set evaluation
(`evaluate`) and `predict`, so all see exactly the same detections. Scores follow the model's
family (`detr_core.model.families`), as each family's `post_process_object_detection` in
transformers computes them (tested against it):

- DETR (`softmax`): one detection a query, its class the most likely real class (the "no
  object" logit is dropped after the softmax) and its score that probability;
- Conditional / Deformable DETR, RT-DETR, D-FINE (`sigmoid`): every (query, class) pair is a
  candidate with score sigmoid(logit); the top-k pairs of an image are kept (k: 100 for
  Conditional / Deformable DETR, the number of queries for RT-DETR / D-FINE), so a query may
  give two classes.

So a `score_threshold` of 0.5 keeps a DETR detection more likely than all other classes and no
object together, and a sigmoid family's detection whose class is more likely present than not.

Detection metrics: COCO mAP family, recall, and the diary's localisation numbers.

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

Crowd regions (`iscrowd: 1` ground truth, `ImageBoxes.crowd_boxes`) are handled as COCOeval
handles them: never an object to find (not in recall's denominator, not `missed`), and a
confident detection that matches no object but covers a crowd region of its class (the
detection's share inside the region, IoU as COCOeval computes it for crowds, >= 0.5) is
ignored: neither a hit nor a false alarm for precision, not a pair for the IoU numbers. mAP
passes them to COCOeval as `iscrowd` ground truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from detr_core.model.families import Family
from detr_core.model.losses import box_centres, to_original_pixels


@dataclass
class ImageBoxes:
    """Boxes of one image: xyxy original pixels, contiguous labels, scores (None for targets).

    Ground truth may carry crowd regions (`crowd_boxes`, `crowd_labels`): no object to find,
    but a detection on one is ignored, not counted wrong (COCOeval's `iscrowd`).
    """

    image_id: int
    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor | None = None
    crowd_boxes: torch.Tensor | None = None
    crowd_labels: torch.Tensor | None = None


def _tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def decode_targets(label_dicts: list[dict[str, Any]]) -> list[ImageBoxes]:
    """Collated `labels` (tensors or numpy) -> ground-truth boxes in original pixels (crowd
    regions are in those pixels already, see `detr_core.data.dataset`)."""
    decoded = []
    for label in label_dicts:
        boxes = _tensor(label["boxes"]).float().reshape(-1, 4)
        crowd = label.get("crowd_boxes")
        decoded.append(ImageBoxes(
            image_id=int(_tensor(label["image_id"]).reshape(-1)[0]),
            boxes=to_original_pixels(boxes, _tensor(label["size"]), _tensor(label["resized_size"]),
                                     _tensor(label["orig_size"])),
            labels=_tensor(label["class_labels"]).long().reshape(-1),
            crowd_boxes=None if crowd is None else _tensor(crowd).float().reshape(-1, 4),
            crowd_labels=None if crowd is None else
            _tensor(label["crowd_labels"]).long().reshape(-1),
        ))
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


def decode_predictions(
    logits: Any, pred_boxes: Any, label_dicts: list[dict[str, Any]], family: Family
) -> list[ImageBoxes]:
    """Detections scored as `family` scores them; boxes mapped like the targets of the same
    images."""
    scores, labels, boxes = scored_queries(_tensor(logits).float(), _tensor(pred_boxes).float(),
                                           family)
    decoded = []
    for i, label in enumerate(label_dicts):
        decoded.append(ImageBoxes(
            image_id=int(_tensor(label["image_id"]).reshape(-1)[0]),
            boxes=to_original_pixels(boxes[i], _tensor(label["size"]),
                                     _tensor(label["resized_size"]), _tensor(label["orig_size"])),
            labels=labels[i],
            scores=scores[i],
        ))
    return decoded


def coco_map(
    predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes], class_names: Sequence[str],
    per_class: bool = True,
) -> dict[str, object]:
    """COCO box mAP family and, if `per_class`, per-class AP (classes never seen omitted).

    torchmetrics computes per-class AP by evaluating once more per class, which more than
    doubles the time of an evaluation; the evaluations during training do without it.
    """
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=per_class,
                                  backend="pycocotools")
    metric.update(
        [{"boxes": p.boxes, "scores": p.scores, "labels": p.labels} for p in predictions],
        [_with_crowd(t) for t in targets],
    )
    result = metric.compute()
    metrics: dict[str, object] = {
        "map": float(result["map"]),
        "map_50": float(result["map_50"]),
        "map_75": float(result["map_75"]),
    }
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
    """Which detections cover a crowd region of their class (COCOeval's crowd IoU: the
    intersection over the detection's own area)."""
    found = torch.zeros(len(boxes), dtype=torch.bool)
    if target.crowd_boxes is None or len(target.crowd_boxes) == 0 or len(boxes) == 0:
        return found
    from pycocotools import mask as mask_utils

    def xywh(b: torch.Tensor) -> list[list[float]]:
        b = b.double()
        return torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]],
                           dim=1).tolist()

    crowd = target.crowd_boxes
    overlap = torch.as_tensor(mask_utils.iou(xywh(boxes), xywh(crowd), [1] * len(crowd)))
    overlap = overlap.reshape(len(boxes), len(crowd))
    overlap[labels[:, None] != target.crowd_labels[None, :]] = -1.0
    return (overlap >= iou_threshold).any(dim=1)


def match_image(pred: ImageBoxes, target: ImageBoxes, score_threshold: float,
                iou_threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                     torch.Tensor]:
    """One image's confident detections in descending score, and the greedy matching:
    (boxes, labels, hit, ignored).

    Each detection claims the unmatched ground-truth box of its class with the highest IoU, if
    that IoU is >= `iou_threshold` (COCO's greedy matching, at one threshold): `hit`. A
    detection that claims nothing but lies on a crowd region of its class (`on_crowd`) is
    `ignored`.
    """
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
            candidates = torch.where(free, row, torch.full_like(row, -1.0))
            best_iou, best = candidates.max(dim=0)
            if best_iou >= iou_threshold:
                free[best] = False
                hit[index] = True
    ignored = ~hit & on_crowd(boxes, labels, target, iou_threshold)
    return boxes, labels, hit, ignored


def match_counts(
    predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes], score_threshold: float,
    iou_threshold: float = 0.5,
) -> tuple[int, int, int]:
    """(matched, ground-truth boxes, confident detections not ignored) over all images
    (`match_image`). A second detection of an object already claimed matches nothing: it is
    what `precision` counts against, unless it lies on a crowd region of its class."""
    matched = num_gt = num_detections = 0
    for pred, target in zip(predictions, targets, strict=True):
        num_gt += len(target.boxes)
        boxes, _, hit, ignored = match_image(pred, target, score_threshold, iou_threshold)
        matched += int(hit.sum())
        num_detections += len(boxes) - int(ignored.sum())
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


def threshold_sweep(
    predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes],
    thresholds: Sequence[float],
) -> list[dict[str, float]]:
    """Recall, precision and F1 at each score threshold: the operating point of a detector,
    to be chosen on validation data (the threshold does not change mAP, which ranks every
    detection; it decides which detections a user is shown)."""
    rows = []
    for threshold in thresholds:
        matched, num_gt, num_detections = match_counts(predictions, targets, threshold)
        rec = matched / num_gt if num_gt else math.nan
        prec = matched / num_detections if num_detections else math.nan
        f1 = 2 * rec * prec / (rec + prec) if rec == rec and prec == prec and rec + prec else \
            math.nan
        rows.append({"score_threshold": float(threshold), "recall": rec, "precision": prec,
                     "f1": f1, "detections": num_detections})
    return rows


def best_f1_threshold(rows: Sequence[dict[str, float]]) -> float | None:
    """The threshold of the highest F1 in a `threshold_sweep` (a tie: the higher threshold,
    fewer boxes shown); None when no row has an F1."""
    scored = [r for r in rows if r["f1"] == r["f1"]]
    if not scored:
        return None
    return max(scored, key=lambda r: (r["f1"], r["score_threshold"]))["score_threshold"]


def detection_metrics(
    predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes],
    class_names: Sequence[str], score_threshold: float, per_class: bool = True,
) -> dict[str, object]:
    """mAP family, per-class AP (if `per_class`), recall, precision and localisation, by
    canonical names."""
    metrics = coco_map(predictions, targets, class_names, per_class=per_class)
    matched, num_gt, num_detections = match_counts(predictions, targets, score_threshold)
    metrics["recall"] = matched / num_gt if num_gt else math.nan
    metrics["precision"] = matched / num_detections if num_detections else math.nan
    metrics.update(localisation(predictions, targets, score_threshold))
    return metrics


def localisation(
    predictions: Sequence[ImageBoxes], targets: Sequence[ImageBoxes], score_threshold: float
) -> dict[str, float]:
    """IoU and centre error of each ground truth with its best-matching confident detection
    (detections ignored on crowd regions left out)."""
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
