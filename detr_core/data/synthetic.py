"""The embedded datasets: synthetic scenes written to disk as real COCO datasets.

`shapes` (the embedded default's task): rectangles, ellipses and triangles on dark noise.
`pretrain` (the shipped checkpoints'): rotated stars, crosses, rings and pentagons on gradients
and stripes, so the fine-tuned classes are new to the model, as a user's are to a COCO-pretrained
DETR. Category ids are 1-based, so the label mapping is always exercised. On disk, a run takes
the path a user's export takes; images come from a seeded numpy Generator only and the folder is
named by a hash of the parameters, so any machine makes the very same files, once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from detr_core.config.run_config import SplitPaths, SyntheticConfig

Box = tuple[float, float, float, float]  # COCO x, y, w, h in pixels
DrawnObject = tuple[str, Box]

SHAPES_CATEGORY_IDS = {"rectangle": 1, "ellipse": 2, "triangle": 3}
PRETRAIN_CATEGORY_IDS = {"star": 1, "cross": 2, "ring": 3, "pentagon": 4}
PRETRAIN_SIDE = (0.18, 0.45)  # object side as a fraction of the image side
FORMAT_VERSION = 1
_DONE_MARKER = "COMPLETE"


@dataclass(frozen=True)
class Scene:
    """One synthetic task: its classes (COCO ids), how an image is drawn, and the drawing's
    version (in the cache key: a changed drawing must not reuse old files)."""

    category_ids: dict[str, int]
    draw: Callable[[np.random.Generator, int, int, int], tuple[Image.Image, list[DrawnObject]]]
    version: int = 1


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box, to keep objects mostly visible."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / min(a[2] * a[3], b[2] * b[3])


def draw_shapes_image(rng: np.random.Generator, size: int, min_objects: int,
                      max_objects: int) -> tuple[Image.Image, list[DrawnObject]]:
    """A noisy dark background and `min..max` filled shapes that barely overlap."""
    names = tuple(SHAPES_CATEGORY_IDS)
    base = rng.integers(0, 90, size=3)
    noise = rng.normal(0, 12, size=(size, size, 3))
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    objects: list[DrawnObject] = []
    wanted = int(rng.integers(min_objects, max_objects + 1))
    for _ in range(wanted * 20):  # the draw order of the original generator, kept on purpose
        if len(objects) == wanted:
            break
        w, h = (int(v) for v in rng.integers(int(size * 0.15), int(size * 0.5) + 1, size=2))
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        box = (float(x), float(y), float(w), float(h))
        if any(_overlap(box, other) > 0.2 for _, other in objects):
            continue
        shape = names[int(rng.integers(len(names)))]
        colour = tuple(int(c) for c in rng.integers(120, 256, size=3))
        corners = (x, y, x + w - 1, y + h - 1)
        if shape == "rectangle":
            draw.rectangle(corners, fill=colour)
        elif shape == "ellipse":
            draw.ellipse(corners, fill=colour)
        else:
            draw.polygon([(x + w / 2, y), (x, y + h - 1), (x + w - 1, y + h - 1)], fill=colour)
        objects.append((shape, box))
    return image, objects


def _place(rng: np.random.Generator, size: int, wanted: int) -> list[tuple[int, int, int, int]]:
    """Up to `wanted` square boxes (x, y, w, h) that overlap each other by at most 20 %."""
    boxes: list[tuple[int, int, int, int]] = []
    low, high = int(size * PRETRAIN_SIDE[0]), int(size * PRETRAIN_SIDE[1])
    for _ in range(wanted * 20):
        if len(boxes) == wanted:
            break
        w = h = int(rng.integers(low, high + 1))
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        if not any(_overlap((x, y, w, h), other) > 0.2 for other in boxes):
            boxes.append((x, y, w, h))
    return boxes


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A two-colour linear gradient in a random direction, sometimes striped, plus noise."""
    first, second = rng.integers(0, 200, size=3), rng.integers(0, 200, size=3)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:size, 0:size] / max(1, size - 1)
    t = np.clip(0.5 + (xs - 0.5) * math.cos(angle) + (ys - 0.5) * math.sin(angle), 0, 1)
    pixels = first + (second - first) * t[..., None]
    if rng.random() < 0.3:
        period = rng.uniform(6, 20)
        phase = (xs * math.cos(angle + 1.3) + ys * math.sin(angle + 1.3)) * size / period
        pixels += 8 * np.sign(np.sin(2 * math.pi * phase))[..., None]
    pixels += rng.normal(0, rng.uniform(4, 16), size=(size, size, 3))
    return np.clip(pixels, 0, 255)


def _draw_pretrain_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int],
                         colour: tuple[int, ...], rotation: float, size: int) -> Box:
    """Draw `shape` centred in the square `box`; return its tight COCO box inside the image."""
    x, y, w, _ = box
    cx, cy, r = x + w / 2, y + w / 2, w / 2
    if shape == "ring":
        draw.ellipse((x, y, x + w - 1, y + w - 1), outline=colour, width=max(2, int(w * 0.18)))
        return (float(x), float(y), float(w), float(w))
    if shape == "cross":  # a plus sign, arms a third of the radius wide, rotated
        t = r * 0.33
        cos, sin = math.cos(rotation), math.sin(rotation)
        points = [(cx + u * cos - v * sin, cy + u * sin + v * cos) for u, v in
                  [(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r),
                   (-t, t), (-r, t), (-r, -t), (-t, -t)]]
    else:  # a star or a pentagon: corners at these radii, evenly spaced around the centre
        radii = [r, r * 0.45] * 5 if shape == "star" else [r] * 5
        step = 2 * math.pi / len(radii)
        points = [(cx + q * math.cos(rotation + i * step), cy + q * math.sin(rotation + i * step))
                  for i, q in enumerate(radii)]
    draw.polygon(points, fill=colour)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, y0 = max(0.0, min(xs)), max(0.0, min(ys))
    x1, y1 = min(float(size), max(xs)), min(float(size), max(ys))
    return (x0, y0, x1 - x0, y1 - y0)


def draw_pretrain_image(rng: np.random.Generator, size: int, min_objects: int,
                        max_objects: int) -> tuple[Image.Image, list[DrawnObject]]:
    """Gradient/striped background and `min..max` rotated stars, crosses, rings, pentagons."""
    names = tuple(PRETRAIN_CATEGORY_IDS)
    background = _background(rng, size)
    image = Image.fromarray(background.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    objects: list[DrawnObject] = []
    for box in _place(rng, size, int(rng.integers(min_objects, max_objects + 1))):
        shape = names[int(rng.integers(len(names)))]
        x, y, w, h = box
        mean = background[y:y + h, x:x + w].mean(axis=(0, 1))
        for _ in range(50):  # a colour at least 150 (summed over channels) from the mean under it
            colour = rng.integers(0, 256, size=3)
            if np.abs(colour - mean).sum() >= 150:
                break
        drawn = _draw_pretrain_shape(draw, shape, box, tuple(int(c) for c in colour),
                                     rng.uniform(0, 2 * math.pi), size)
        if drawn[2] >= 2 and drawn[3] >= 2:
            objects.append((shape, drawn))
    return image, objects


SCENES = {
    "shapes": Scene(SHAPES_CATEGORY_IDS, draw_shapes_image),
    "pretrain": Scene(PRETRAIN_CATEGORY_IDS, draw_pretrain_image, version=2),
}


def default_cache_root() -> Path:
    """`$DETR_SEARCH_CACHE` or `~/.cache/detr-search`: shared by runs, trials and tests."""
    env = os.environ.get("DETR_SEARCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "detr-search"


def dataset_dir(cfg: SyntheticConfig) -> Path:
    """Folder of the dataset made from `cfg` (the cache key is every generation parameter)."""
    params = cfg.model_dump(exclude={"cache_dir", "task"})
    params["format"] = FORMAT_VERSION
    if cfg.task != "shapes":  # the default task keeps the cache key it always had
        params["task"] = f"{cfg.task}@{SCENES[cfg.task].version}"
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_root() / "synthetic"
    return root / f"{cfg.task}-{cfg.image_size}px-{digest}"


def split_paths(root: Path, split: str) -> SplitPaths:
    """Annotation file and image folder of one split inside a synthetic dataset folder."""
    return SplitPaths(annotations=str(root / f"{split}.json"), images=str(root / split))


def ensure_synthetic_dataset(cfg: SyntheticConfig) -> Path:
    """The dataset folder for `cfg`, generated first if not cached (in a temporary folder
    renamed into place, so no other maker sees half a dataset)."""
    target = dataset_dir(cfg)
    if (target / _DONE_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        _write_dataset(cfg, staging)
        (staging / _DONE_MARKER).write_text("ok\n")
        try:
            staging.rename(target)
        except OSError:
            if not (target / _DONE_MARKER).is_file():  # lost a race to a broken folder
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_dataset(cfg: SyntheticConfig, root: Path) -> None:
    scene = SCENES[cfg.task]
    splits = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    for offset, (split, count) in enumerate(splits.items()):
        if count == 0:
            continue
        rng = np.random.default_rng([cfg.seed, offset])
        (root / split).mkdir()
        images, annotations = [], []
        for image_id in range(1, count + 1):
            image, objects = scene.draw(rng, cfg.image_size, cfg.min_objects, cfg.max_objects)
            file_name = f"{image_id:06d}.png"
            image.save(root / split / file_name)
            images.append({"id": image_id, "file_name": file_name, "width": cfg.image_size,
                           "height": cfg.image_size})
            annotations += [{"id": len(annotations) + 1 + k, "image_id": image_id,
                             "category_id": scene.category_ids[name], "bbox": [x, y, w, h],
                             "area": float(w * h), "iscrowd": 0}
                            for k, (name, (x, y, w, h)) in enumerate(objects)]
        categories = [{"id": cid, "name": name, "supercategory": "shape"}
                      for name, cid in scene.category_ids.items()]
        (root / f"{split}.json").write_text(json.dumps({
            "info": {"description": f"detr-search synthetic {cfg.task}"}, "images": images,
            "annotations": annotations, "categories": categories}))
