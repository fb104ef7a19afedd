"""Detections drawn on their images: what "it finds the objects" looks like.

`draw_detections` draws one image's boxes with class names (and scores); `detection_grid`
puts images with their ground truth beside the same images with a model's confident
detections, pair after pair, into one PNG (REPORT.md shows the winner's on the test split).
Drawing and tiling are torchvision's (`draw_bounding_boxes`, `make_grid`); images are scaled
up so small images stay legible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes, make_grid

GROUND_TRUTH_COLOUR = (40, 220, 60)
DETECTION_COLOUR = (255, 60, 40)
MIN_TILE = 192  # pixels: smaller images are scaled up (nearest) before drawing


def _scale_for(image: np.ndarray) -> float:
    return max(1.0, MIN_TILE / max(image.shape[0], image.shape[1]))


def draw_detections(image: np.ndarray, boxes_xyxy: Sequence[Sequence[float]],
                    captions: Sequence[str], colour: tuple[int, int, int],
                    scale: float | None = None) -> torch.Tensor:
    """HxWx3 uint8 image -> 3xH'xW' uint8 tensor with the boxes and captions drawn."""
    scale = _scale_for(image) if scale is None else scale
    picture = Image.fromarray(image)
    if scale != 1.0:
        size = (round(picture.width * scale), round(picture.height * scale))
        picture = picture.resize(size, Image.NEAREST)
    tensor = torch.from_numpy(np.array(picture)).permute(2, 0, 1).contiguous()
    if not len(boxes_xyxy):
        return tensor
    boxes = torch.tensor(boxes_xyxy, dtype=torch.float32).reshape(-1, 4) * scale
    return draw_bounding_boxes(tensor, boxes, labels=list(captions), colors=colour, width=2)


def detection_grid(images: Sequence[np.ndarray],
                   ground_truth: Sequence[Sequence[tuple[Sequence[float], str]]],
                   detections: Sequence[Sequence[tuple[Sequence[float], str, float]]],
                   path: Path, pairs_per_row: int = 4) -> Path:
    """A PNG of (ground truth | detections) pairs: boxes xyxy in the images' own pixels."""
    tiles = []
    for image, truth, found in zip(images, ground_truth, detections, strict=True):
        scale = _scale_for(image)
        tiles.append(draw_detections(image, [b for b, _ in truth], [n for _, n in truth],
                                     GROUND_TRUTH_COLOUR, scale))
        tiles.append(draw_detections(image, [b for b, _, _ in found],
                                     [f"{n} {s:.2f}" for _, n, s in found],
                                     DETECTION_COLOUR, scale))
    height = max(t.shape[1] for t in tiles)
    width = max(t.shape[2] for t in tiles)
    padded = [torch.nn.functional.pad(t, (0, width - t.shape[2], 0, height - t.shape[1]))
              for t in tiles]
    grid = make_grid(padded, nrow=2 * pairs_per_row, padding=4, pad_value=255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path)
    return path


def split_detection_grid(split: Any, names: Sequence[str], category_of_label: Any,
                         results: Sequence[dict[str, Any]], score_threshold: float, path: Path,
                         count: int = 8) -> Path:
    """Grid for the first `count` images of a COCO split and COCO-results detections on it.

    `split` is a `detr_core.data.coco.CocoSplit`; `results` use its category ids.
    """
    from detr_core.data import load_rgb

    name_of = {category_of_label(label): name for label, name in enumerate(names)}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for det in results:
        if det["score"] >= score_threshold:
            by_image.setdefault(det["image_id"], []).append(det)
    images, truths, found = [], [], []
    for image_id in split.image_ids[:count]:
        info = split.coco.imgs[image_id]
        images.append(load_rgb(str(split.images_dir / info["file_name"])))
        truths.append([(_xyxy(a["bbox"]), name_of.get(a["category_id"], "?"))
                       for a in split.coco.imgToAnns.get(image_id, [])])
        found.append([(_xyxy(d["bbox"]), name_of.get(d["category_id"], "?"), d["score"])
                      for d in sorted(by_image.get(image_id, []), key=lambda d: -d["score"])])
    return detection_grid(images, truths, found, path)


def _xyxy(box: Sequence[float]) -> list[float]:
    x, y, w, h = box
    return [x, y, x + w, y + h]
