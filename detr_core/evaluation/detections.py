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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from detr_core.model.boxes import to_original_pixels
from detr_core.model.families import Family


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
