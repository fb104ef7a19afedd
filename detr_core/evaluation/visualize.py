"""Detections drawn on their images: what "it finds the objects" looks like.

`detection_grid` draws every image `PANEL_HEIGHT` tall with labels sized in display pixels:
real datasets mix ~200 and ~2000 px images, and a shared canvas made most panels thumbnails in
black padding, with labels unreadable once shrunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

GROUND_TRUTH_COLOUR = (40, 220, 60)
DETECTION_COLOUR = (255, 60, 40)
MIN_TILE = 192  # pixels: `draw_detections` scales smaller images up (nearest) by default

# detection_grid's layout, in pixels of the PNG (DPI 72: one point is one pixel)
PANEL_HEIGHT = 256  # every image is drawn this tall, its width following its aspect ratio
LABEL_FONT_PX = 12  # class name + score, the same size on every image
BOX_LINE_PX = 2
PAIR_GAP = 4  # between an image's ground truth and its detections
GAP = 16  # between pairs, between rows and around the grid
DPI = 72


def draw_detections(image: np.ndarray, boxes_xyxy: Sequence[Sequence[float]],
                    captions: Sequence[str], colour: tuple[int, int, int],
                    scale: float | None = None) -> torch.Tensor:
    """HxWx3 uint8 image -> 3xH'xW' uint8 tensor with the boxes and captions drawn."""
    scale = max(1.0, MIN_TILE / max(image.shape[:2])) if scale is None else scale
    picture = Image.fromarray(image)
    if scale != 1.0:
        size = (round(picture.width * scale), round(picture.height * scale))
        picture = picture.resize(size, Image.NEAREST)
    tensor = torch.from_numpy(np.array(picture)).permute(2, 0, 1).contiguous()
    if not len(boxes_xyxy):
        return tensor
    boxes = torch.tensor(boxes_xyxy, dtype=torch.float32).reshape(-1, 4) * scale
    return draw_bounding_boxes(tensor, boxes, labels=list(captions), colors=colour, width=2)


def panel_width(image: np.ndarray) -> int:
    """Display width of an image drawn `PANEL_HEIGHT` tall (its aspect ratio kept)."""
    height, width = image.shape[:2]
    return max(1, round(PANEL_HEIGHT * width / height))


def detection_grid(images: Sequence[np.ndarray],
                   ground_truth: Sequence[Sequence[tuple[Sequence[float], str]]],
                   detections: Sequence[Sequence[tuple[Sequence[float], str, float]]],
                   path: Path, pairs_per_row: int = 4) -> Path:
    """A PNG of (ground truth | detections) pairs (boxes xyxy in the images' own pixels),
    `pairs_per_row` a row, as wide as its images make it (white beyond, never black)."""
    from matplotlib.figure import Figure

    if not images:
        raise ValueError("detection_grid: no images to draw")
    pairs = list(zip(images, ground_truth, detections, strict=True))
    rows = [pairs[i:i + pairs_per_row] for i in range(0, len(pairs), pairs_per_row)]
    width = max(sum(2 * panel_width(image) + PAIR_GAP for image, _, _ in row)
                + GAP * (len(row) - 1) for row in rows) + 2 * GAP
    height = len(rows) * (PANEL_HEIGHT + GAP) + GAP
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    for row_index, row in enumerate(rows):
        top, left = GAP + row_index * (PANEL_HEIGHT + GAP), GAP
        for image, truth, found in row:
            # resized to its panel's pixels, shown 1:1: big photos shrink with Lanczos
            panel = panel_width(image)
            rgb = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]
            picture = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
            resample = Image.NEAREST if PANEL_HEIGHT / picture.height >= 2 else Image.LANCZOS
            shown = np.asarray(picture.resize((panel, PANEL_HEIGHT), resample))
            panels = [
                ([b for b, _ in truth], [n for _, n in truth], GROUND_TRUTH_COLOUR),
                ([b for b, _, _ in found], [f"{n} {s:.2f}" for _, n, s in found],
                 DETECTION_COLOUR)]
            for boxes, captions, colour in panels:
                axes = figure.add_axes((left / width, 1 - (top + PANEL_HEIGHT) / height,
                                        panel / width, PANEL_HEIGHT / height))
                _draw_panel(axes, shown, image.shape[:2], boxes, captions, colour)
                left += panel + PAIR_GAP
            left += GAP - PAIR_GAP
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png", facecolor="white")
    return path


def _draw_panel(axes: Any, shown: np.ndarray, size: tuple[int, int],
                boxes: Sequence[Sequence[float]], captions: Sequence[str],
                colour: tuple[int, int, int]) -> None:
    """One panel in the image's own pixel coordinates (`size`: height, width)."""
    from matplotlib.patches import Rectangle

    image_height, image_width = size
    axes.imshow(shown, extent=(0, image_width, image_height, 0), interpolation="nearest",
                aspect="auto")
    axes.set_xlim(0, image_width)
    axes.set_ylim(image_height, 0)
    axes.set_axis_off()
    edge = tuple(c / 255 for c in colour)
    pixels_per_unit = PANEL_HEIGHT / image_height
    for (x0, y0, x1, y1), caption in zip(boxes, captions, strict=True):
        axes.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=edge,
                                 linewidth=BOX_LINE_PX))
        above = y0 * pixels_per_unit >= LABEL_FONT_PX + 6  # room for the label over the box
        axes.text(max(x0, 0), y0, caption, fontsize=LABEL_FONT_PX, color="black",
                  va="bottom" if above else "top", ha="left", clip_on=True,
                  bbox={"facecolor": edge, "edgecolor": "none", "pad": 1.5})


def split_detection_grid(split: Any, names: Sequence[str], category_of_label: Any,
                         results: Sequence[dict[str, Any]], score_threshold: float, path: Path,
                         count: int = 8) -> Path:
    """Grid for the first `count` images of a `CocoSplit` and COCO-results detections on it."""
    from detr_core.data.images import load_rgb

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
