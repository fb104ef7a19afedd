"""A validated COCO split as a torch `Dataset`, and the collate function that feeds DETR.

Items are (RGB image array, COCO annotations with contiguous labels) after augmentation; the
collate function runs the image processor on the whole batch (resize, normalise, pad to a fixed
square canvas, boxes to normalised cx,cy,w,h) and adds `pixel_mask`. Each label dict also gets
`resized_size`, the image's extent inside the padded canvas, so predictions can be mapped back
to original pixels exactly (`detr_core.model.boxes.to_original_pixels`).

Images are read by `detr_core.data.image_io.load_rgb` (EXIF orientation applied, every mode as
8-bit RGB). Crowd regions (`iscrowd: 1`) are no training targets; they ride along, augmented
with the image, as `crowd_boxes` / `crowd_labels` (xyxy pixels of the image as given to the
processor) so that evaluation can ignore detections on them as COCOeval does.

Decoded images are kept in memory when the whole split decodes to at most
`$DETR_SEARCH_IMAGE_CACHE_MB` (default 128; 0 turns it off) by the annotation file's sizes
(the embedded default's splits are a few MB) and the loading happens in the training process
itself: a run on one CPU core then decodes each file once instead of once an epoch (PNG
decoding was ~7% of a step there). An image file damaged after it was cached goes unnoticed:
its pixels are already in memory. DataLoader
workers never cache (each would hold its own copy, and they decode in parallel anyway), and
larger splits are read from disk every time, so memory stays bounded whatever the data.

An image file that cannot be read (it was checked before training, so it changed since) raises
`UnreadableImageError`: one line naming the annotation file, the image id and the file.

Augmentation randomness in DataLoader workers: each worker process starts with a copy of the
parent's albumentations pipeline, random state included, so every worker (and every epoch,
when workers are re-created) would replay the same stream. A worker therefore re-seeds its copy
once from `torch.utils.data.get_worker_info().seed`, which torch derives from the run's torch
seed, the epoch's loader and the worker id: distinct per worker and epoch, the same on a rerun.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from detr_core.data.coco import CocoSplit, LabelMap
from detr_core.data.image_check import ImageRecord, UnreadableImageError, image_error
from detr_core.data.image_io import load_rgb

__all__ = ["CocoDetectionDataset", "DetrCollator", "load_rgb", "memory_cache_bytes"]

#: Environment variable: the largest split (decoded, MiB) whose images are decoded only once.
CACHE_ENV = "DETR_SEARCH_IMAGE_CACHE_MB"
DEFAULT_CACHE_MB = 128


def memory_cache_bytes() -> int:
    """`$DETR_SEARCH_IMAGE_CACHE_MB` in bytes (default 128 MiB; 0, or a value that is not a
    number, turns the cache off: it only ever saves time)."""
    raw = os.environ.get(CACHE_ENV)
    try:
        megabytes = float(raw) if raw is not None else DEFAULT_CACHE_MB
    except ValueError:
        megabytes = 0.0
    return max(0, int(megabytes * 2**20))


class CocoDetectionDataset(Dataset):
    """Images of one split with their boxes, augmented by an albumentations `Compose`."""

    def __init__(self, split: CocoSplit, label_map: LabelMap, transform: Any | None) -> None:
        self.split = split
        self.label_map = label_map
        self.transform = transform
        self._worker_seed: int | None = None  # the seed this process's transform last got
        decoded = sum(3 * int(split.coco.imgs[i].get("width") or 0)
                      * int(split.coco.imgs[i].get("height") or 0) for i in split.image_ids)
        limit = memory_cache_bytes()
        self._cache: dict[int, np.ndarray] | None = {} if 0 < decoded <= limit else None

    def _seed_transform_in_worker(self) -> None:
        """In a DataLoader worker, re-seed the pipeline from the worker's torch seed, once."""
        info = torch.utils.data.get_worker_info()
        if info is None or self.transform is None or self._worker_seed == info.seed:
            return
        self._worker_seed = info.seed
        self.transform.set_random_seed(info.seed % 2**32)

    def _load(self, image_id: int, info: dict[str, Any]) -> np.ndarray:
        """The image as RGB (a copy: a transform may write into it), from memory when cached."""
        cache = self._cache if torch.utils.data.get_worker_info() is None else None
        if cache is not None and image_id in cache:
            return cache[image_id].copy()
        image = self._read(image_id, info)
        if cache is not None:
            cache[image_id] = image
            return image.copy()
        return image

    def _read(self, image_id: int, info: dict[str, Any]) -> np.ndarray:
        """The file decoded; a file that cannot be read is one line naming it and its id."""
        record = ImageRecord(image_id, self.split.images_dir / info["file_name"],
                             info["width"], info["height"])
        try:
            return load_rgb(str(record.path))
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, zlib.error...
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise image_error(record, f"cannot be read during training: {detail}",
                              self.split.annotation_file, UnreadableImageError) from None

    def __len__(self) -> int:
        return len(self.split.image_ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        coco = self.split.coco
        image_id = self.split.image_ids[index]
        info = coco.imgs[image_id]
        image = self._load(image_id, info)
        anns = coco.imgToAnns.get(image_id, [])
        boxes = [list(a["bbox"]) for a in anns]
        # a crowd region's label is stored as -(label + 1) through the augmentation
        labels = [self.label_map.label_of(a["category_id"]) for a in anns]
        tags = [-(label + 1) if a.get("iscrowd", 0) else label
                for a, label in zip(anns, labels, strict=True)]
        if self.transform is not None:
            self._seed_transform_in_worker()
            out = self.transform(image=image, bboxes=np.asarray(boxes, dtype=np.float32).reshape(
                -1, 4), category_ids=tags)
            image, boxes, tags = out["image"], out["bboxes"].tolist(), list(out["category_ids"])
        annotations, crowd = [], []
        for box, tag in zip(boxes, tags, strict=True):
            box = [float(v) for v in box]
            if tag < 0:
                crowd.append((box, -int(tag) - 1))
            else:
                annotations.append({"bbox": box, "category_id": int(tag),
                                    "area": box[2] * box[3], "iscrowd": 0})
        return image, {"image_id": int(image_id), "annotations": annotations, "crowd": crowd}


class DetrCollator:
    """Batch images + COCO annotations into the inputs of any DETR-family model with the
    run's image processor (a pixel mask of ones where the processor pads nothing)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, batch: list[tuple[np.ndarray, dict[str, Any]]]) -> dict[str, Any]:
        images = [item[0] for item in batch]
        annotations = [{"image_id": item[1]["image_id"], "annotations": item[1]["annotations"]}
                       for item in batch]
        encoded = self.processor(images=images, annotations=annotations, return_tensors="pt")
        mask = encoded.get("pixel_mask")
        if mask is None:  # a processor that resizes to a fixed size pads nothing (RT-DETR)
            pixels = encoded["pixel_values"]
            mask = torch.ones((pixels.shape[0], *pixels.shape[2:]), dtype=torch.long)
        # the resized image's rows and columns inside the padded canvas, for the whole batch
        # at once (image by image, these small tensor ops took a third of the collation)
        sizes = torch.stack([mask.any(dim=2).sum(dim=1), mask.any(dim=1).sum(dim=1)], dim=1)
        for label, size, item in zip(encoded["labels"], sizes.unbind(0), batch, strict=True):
            label["resized_size"] = size.clone()
            crowd = item[1].get("crowd", [])
            label["crowd_boxes"] = torch.tensor(
                [[x, y, x + w, y + h] for (x, y, w, h), _ in crowd],
                dtype=torch.float32).reshape(-1, 4) if crowd else torch.zeros((0, 4))
            label["crowd_labels"] = torch.tensor([c for _, c in crowd], dtype=torch.int64) \
                if crowd else torch.zeros(0, dtype=torch.int64)
        return {
            "pixel_values": encoded["pixel_values"],
            "pixel_mask": mask,
            "labels": encoded["labels"],
        }
