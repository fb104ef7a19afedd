"""The embedded default dataset: coloured shapes written to disk as a real COCO dataset.

Why on disk and not in memory: the run then goes through exactly the code path a user's COCO
export goes through (JSON read by pycocotools, image files opened by PIL). Generation is seeded
and the folder name is a hash of the parameters, so it is made once and reused by every run
and every search trial; it is written to a temporary folder and renamed into place, so
concurrent makers never see half a dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from detr_core.config import SplitPaths, SyntheticConfig

SHAPES = ("rectangle", "ellipse", "triangle")
# COCO-style 1-based, deliberately not 0..N-1, so the label mapping is always exercised.
CATEGORY_IDS = {"rectangle": 1, "ellipse": 2, "triangle": 3}
FORMAT_VERSION = 1
_DONE_MARKER = "COMPLETE"


def default_cache_root() -> Path:
    """`$DETR_SEARCH_CACHE` or `~/.cache/detr-search`: shared by runs, trials and tests."""
    env = os.environ.get("DETR_SEARCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "detr-search"


def dataset_dir(cfg: SyntheticConfig) -> Path:
    """Folder of the dataset made from `cfg` (the cache key is every generation parameter)."""
    params = {k: v for k, v in asdict(cfg).items() if k != "cache_dir"}
    params["format"] = FORMAT_VERSION
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_root() / "synthetic"
    return root / f"shapes-{cfg.image_size}px-{digest}"


def split_paths(root: Path, split: str) -> SplitPaths:
    """Annotation file and image folder of one split inside a synthetic dataset folder."""
    return SplitPaths(annotations=str(root / f"{split}.json"), images=str(root / split))


def ensure_synthetic_dataset(cfg: SyntheticConfig) -> Path:
    """Return the dataset folder for `cfg`, generating it first if it is not cached yet."""
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
    splits = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    for offset, (split, count) in enumerate(splits.items()):
        if count == 0:
            continue
        rng = np.random.default_rng([cfg.seed, offset])
        (root / split).mkdir()
        coco = _empty_coco()
        for image_id in range(1, count + 1):
            image, objects = _draw_image(rng, cfg)
            file_name = f"{image_id:06d}.png"
            image.save(root / split / file_name)
            coco["images"].append(
                {"id": image_id, "file_name": file_name, "width": cfg.image_size,
                 "height": cfg.image_size}
            )
            for shape, (x, y, w, h) in objects:
                coco["annotations"].append(
                    {"id": len(coco["annotations"]) + 1, "image_id": image_id,
                     "category_id": CATEGORY_IDS[shape], "bbox": [x, y, w, h],
                     "area": float(w * h), "iscrowd": 0}
                )
        (root / f"{split}.json").write_text(json.dumps(coco))


def _empty_coco() -> dict:
    return {
        "info": {"description": "detr-search synthetic shapes"},
        "images": [],
        "annotations": [],
        "categories": [{"id": cid, "name": name, "supercategory": "shape"}
                       for name, cid in CATEGORY_IDS.items()],
    }


def _draw_image(
    rng: np.random.Generator, cfg: SyntheticConfig
) -> tuple[Image.Image, list[tuple[str, tuple[float, float, float, float]]]]:
    """One image: a noisy background and 1..max_objects shapes that barely overlap."""
    size = cfg.image_size
    base = rng.integers(0, 90, size=3)
    noise = rng.normal(0, 12, size=(size, size, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    boxes: list[tuple[float, float, float, float]] = []
    objects = []
    wanted = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    for _ in range(wanted * 20):
        if len(objects) == wanted:
            break
        w, h = (int(v) for v in rng.integers(int(size * 0.15), int(size * 0.5) + 1, size=2))
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        box = (float(x), float(y), float(w), float(h))
        if any(_overlap(box, other) > 0.2 for other in boxes):
            continue
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        colour = tuple(int(c) for c in rng.integers(120, 256, size=3))
        corners = (x, y, x + w - 1, y + h - 1)
        if shape == "rectangle":
            draw.rectangle(corners, fill=colour)
        elif shape == "ellipse":
            draw.ellipse(corners, fill=colour)
        else:
            draw.polygon([(x + w / 2, y), (x, y + h - 1), (x + w - 1, y + h - 1)], fill=colour)
        boxes.append(box)
        objects.append((shape, box))
    return image, objects


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over the smaller box, to keep shapes mostly visible."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / min(a[2] * a[3], b[2] * b[3])
