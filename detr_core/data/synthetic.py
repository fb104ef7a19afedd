"""The embedded datasets: synthetic scenes written to disk as real COCO datasets.

Why on disk and not in memory: the run then goes through exactly the code path a user's COCO
export goes through (JSON read by pycocotools, image files opened by PIL). What the images show
is `detr_core.data.scenes` (the `shapes` fine-tuning task or the `pretrain` task). Generation
is seeded and the folder name is a hash of the parameters, so it is made once and reused by
every run and every search trial, and a machine that lacks it makes the very same files; it
is written to a temporary folder and renamed into place, so concurrent makers never see half a
dataset.
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

from detr_core.config.run_config import SplitPaths, SyntheticConfig
from detr_core.data.scenes import SCENES

# COCO-style 1-based category ids (see `scenes`), deliberately not 0..N-1, so the label
# mapping is always exercised.
FORMAT_VERSION = 1
_DONE_MARKER = "COMPLETE"


def default_cache_root() -> Path:
    """`$DETR_SEARCH_CACHE` or `~/.cache/detr-search`: shared by runs, trials and tests."""
    env = os.environ.get("DETR_SEARCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "detr-search"


def dataset_dir(cfg: SyntheticConfig) -> Path:
    """Folder of the dataset made from `cfg` (the cache key is every generation parameter)."""
    params = {k: v for k, v in asdict(cfg).items() if k not in ("cache_dir", "task")}
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
    scene = SCENES[cfg.task]
    splits = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    for offset, (split, count) in enumerate(splits.items()):
        if count == 0:
            continue
        rng = np.random.default_rng([cfg.seed, offset])
        (root / split).mkdir()
        coco = _empty_coco(scene.name, scene.category_ids)
        for image_id in range(1, count + 1):
            image, objects = scene.draw(rng, cfg.image_size, cfg.min_objects, cfg.max_objects)
            file_name = f"{image_id:06d}.png"
            image.save(root / split / file_name)
            coco["images"].append(
                {"id": image_id, "file_name": file_name, "width": cfg.image_size,
                 "height": cfg.image_size}
            )
            for name, (x, y, w, h) in objects:
                coco["annotations"].append(
                    {"id": len(coco["annotations"]) + 1, "image_id": image_id,
                     "category_id": scene.category_ids[name], "bbox": [x, y, w, h],
                     "area": float(w * h), "iscrowd": 0}
                )
        (root / f"{split}.json").write_text(json.dumps(coco))


def _empty_coco(task: str, category_ids: dict[str, int]) -> dict:
    return {
        "info": {"description": f"detr-search synthetic {task}"},
        "images": [],
        "annotations": [],
        "categories": [{"id": cid, "name": name, "supercategory": "shape"}
                       for name, cid in category_ids.items()],
    }
