"""DETR outputs and targets -> per-image boxes in original pixels.

Shared by evaluation during training (`metrics.compute_metrics`) and the test-set evaluation
(`evaluate`), so both see exactly the same detections. A DETR query's class is the most
likely real class (the "no object" logit is dropped after the softmax, as in
`post_process_object_detection`) and its score that probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from detr_core.model import to_original_pixels


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


def decode_predictions(
    logits: Any, pred_boxes: Any, label_dicts: list[dict[str, Any]]
) -> list[ImageBoxes]:
    """Per-query best class and score; boxes mapped like the targets of the same images."""
    probs = _tensor(logits).float().softmax(-1)[..., :-1]
    scores, labels = probs.max(-1)
    boxes = _tensor(pred_boxes).float()
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
