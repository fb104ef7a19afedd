"""Augmentation, a validated COCO split as a torch `Dataset`, and the collate that feeds DETR.

Pipelines come from YAML (`[{HorizontalFlip: {p: 0.5}}, ...]`); boxes travel in COCO pixels,
clipped, those under `min_area` / `min_visibility` dropped. Each pipeline is seeded, and a
DataLoader worker (which inherits the parent's random state) re-seeds its copy once from
`get_worker_info().seed`: distinct per worker and epoch, the same on a rerun. Crowd regions ride
along as `crowd_boxes` / `crowd_labels` (xyxy pixels) for evaluation to ignore, not as targets.

A split that decodes to at most `$DETR_SEARCH_IMAGE_CACHE_MB` stays in memory in the training
process (PNG decoding was ~7% of a step on one CPU core); workers never cache.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from detr_core.data.coco import CocoSplit, LabelMap
from detr_core.data.images import ImageRecord, UnreadableImageError, image_error, load_rgb, one_line
from detr_core.files.errors import UserInputError

__all__ = ["CocoDetectionDataset", "DetrCollator", "load_rgb", "memory_cache_bytes"]

CACHE_ENV = "DETR_SEARCH_IMAGE_CACHE_MB"
DEFAULT_CACHE_MB = 128


def build_augmentation(
    steps: list[Any], min_area: float, min_visibility: float, where: str, seed: int = 0
) -> Any:
    """A seeded `A.Compose` from one-key mappings; `where` is the YAML key for errors."""
    import albumentations as A

    transforms = []
    for index, step in enumerate(steps):
        key = f"{where}[{index}]"
        if isinstance(step, str):
            step = {step: None}
        if not (isinstance(step, dict) and len(step) == 1):
            raise UserInputError(f"expected `TransformName: {{arg: value}}`, got {step!r}", key=key)
        ((name, kwargs),) = step.items()
        kwargs = {} if kwargs is None else kwargs
        cls = getattr(A, str(name), None)
        if not isinstance(cls, type) or not issubclass(cls, A.BasicTransform):
            raise UserInputError(f"unknown albumentations transform {name!r}", key=key)
        if not isinstance(kwargs, dict):
            raise UserInputError(f"arguments of {name} must be a mapping", key=key)
        try:
            with warnings.catch_warnings():
                # albumentations only *warns* about an argument it does not know and drops it
                warnings.filterwarnings("error", message=".*not valid for transform.*")
                transforms.append(cls(**kwargs))
        except (TypeError, ValueError, UserWarning) as exc:
            raise UserInputError(f"{name}: {argument_problem(exc)}", key=key) from None
    # unless a later transform moves boxes (and could scale up one under `min_area`), the final
    # box filter alone gives the same output in 2/3 of the default pipeline's time
    later_moves_boxes = any(not isinstance(t, A.ImageOnlyTransform) for t in transforms[1:])
    with warnings.catch_warnings():  # an empty list is valid: boxes are still clipped
        warnings.filterwarnings("ignore", message="Got processor for bboxes")
        return A.Compose(transforms, seed=seed, bbox_params=A.BboxParams(
            format="coco", label_fields=["category_ids"], min_area=min_area,
            min_visibility=min_visibility, clip=True, check_each_transform=later_moves_boxes))


_PYDANTIC_HEADER = re.compile(r"^\d+ validation errors? for \w+$")
_PYDANTIC_DETAIL = re.compile(r"^\s+(?P<msg>.*?)(?: \[type=[^,\]]+(?:, input_value=(?P<value>.*?))?"
                              r"(?:, input_type=\w+)?\])?$")


def argument_problem(exc: BaseException) -> str:
    """A transform's refusal of its arguments on one line, pydantic's block as e.g.
    `brightness: Input should be a valid tuple or a valid number (got 'x')`."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    first = " ".join(lines[0].split())
    if not _PYDANTIC_HEADER.match(lines[0].strip()):
        return first
    fields: dict[str, list[str]] = {}
    values: dict[str, str] = {}
    field = None
    for line in lines[1:]:
        if not line.startswith(" "):
            field = line.strip().split(".", 1)[0]  # `brightness.float`: one branch of a union
            fields.setdefault(field, [])
            continue
        match = _PYDANTIC_DETAIL.match(line)
        if field is None or match is None or line.strip().startswith("For further"):
            continue
        message = match.group("msg").removeprefix("Value error, ")
        if message not in fields[field]:
            fields[field].append(message)
        if match.group("value") and message != "Field required":
            values.setdefault(field, match.group("value"))
    return "; ".join(f"{name}: {' or '.join(messages)}"
                     + (f" (got {values[name]})" if name in values else "")
                     for name, messages in fields.items()) or first


def memory_cache_bytes() -> int:
    """`$DETR_SEARCH_IMAGE_CACHE_MB` in bytes; 0 or not a number: off (it only saves time)."""
    try:
        megabytes = float(os.environ.get(CACHE_ENV, DEFAULT_CACHE_MB))
    except ValueError:
        megabytes = 0.0
    return max(0, int(megabytes * 2**20))


class CocoDetectionDataset(Dataset):
    """Images of one split with their boxes, augmented by an albumentations `Compose`."""

    def __init__(self, split: CocoSplit, label_map: LabelMap, transform: Any | None) -> None:
        self.split, self.label_map, self.transform = split, label_map, transform
        self._worker_seed: int | None = None  # the seed this process's transform last got
        decoded = sum(3 * int(split.coco.imgs[i].get("width") or 0)
                      * int(split.coco.imgs[i].get("height") or 0) for i in split.image_ids)
        self._cache: dict[int, np.ndarray] | None = (
            {} if 0 < decoded <= memory_cache_bytes() else None)

    def _load(self, image_id: int, info: dict[str, Any]) -> np.ndarray:
        """The image as RGB (a copy: a transform may write into it), from memory when cached."""
        cache = self._cache if torch.utils.data.get_worker_info() is None else None
        if cache is not None and image_id in cache:
            return cache[image_id].copy()
        record = ImageRecord(image_id, self.split.images_dir / info["file_name"],
                             info["width"], info["height"])
        try:
            image = load_rgb(str(record.path))
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, zlib.error...
            raise image_error(record, f"cannot be read during training: {one_line(exc)}",
                              self.split.annotation_file, UnreadableImageError) from None
        if cache is None:
            return image
        cache[image_id] = image
        return image.copy()

    def __len__(self) -> int:
        return len(self.split.image_ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        image_id = self.split.image_ids[index]
        image = self._load(image_id, self.split.coco.imgs[image_id])
        anns = self.split.coco.imgToAnns.get(image_id, [])
        boxes = [list(a["bbox"]) for a in anns]
        # a crowd region's label is stored as -(label + 1) through the augmentation
        labels = [self.label_map.label_of(a["category_id"]) for a in anns]
        tags = [-(label + 1) if a.get("iscrowd", 0) else label
                for a, label in zip(anns, labels, strict=True)]
        if self.transform is not None:
            info = torch.utils.data.get_worker_info()  # in a worker: re-seed once, see above
            if info is not None and self._worker_seed != info.seed:
                self._worker_seed = info.seed
                self.transform.set_random_seed(info.seed % 2**32)
            out = self.transform(image=image, category_ids=tags,
                                 bboxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
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
    """Batch items into a DETR-family model's inputs with the run's image processor."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, batch: list[tuple[np.ndarray, dict[str, Any]]]) -> dict[str, Any]:
        annotations = [{"image_id": item["image_id"], "annotations": item["annotations"]}
                       for _, item in batch]
        encoded = self.processor(images=[image for image, _ in batch], annotations=annotations,
                                 return_tensors="pt")
        pixels = encoded["pixel_values"]
        mask = encoded.get("pixel_mask")
        if mask is None:  # a processor that resizes to a fixed size pads nothing (RT-DETR)
            mask = torch.ones((pixels.shape[0], *pixels.shape[2:]), dtype=torch.long)
        # the resized image's rows and columns inside the padded canvas, for the whole batch
        # at once (image by image, these small tensor ops took a third of the collation)
        sizes = torch.stack([mask.any(dim=2).sum(dim=1), mask.any(dim=1).sum(dim=1)], dim=1)
        for label, size, (_, item) in zip(encoded["labels"], sizes.unbind(0), batch, strict=True):
            label["resized_size"] = size.clone()
            crowd = item.get("crowd", [])
            label["crowd_boxes"] = torch.tensor([[x, y, x + w, y + h] for (x, y, w, h), _ in crowd],
                                                dtype=torch.float32).reshape(-1, 4)
            label["crowd_labels"] = torch.tensor([c for _, c in crowd], dtype=torch.int64)
        return {"pixel_values": pixels, "pixel_mask": mask, "labels": encoded["labels"]}


def check_pipelines_fit(augmentation: Any, train: CocoSplit, val: CocoSplit) -> None:
    """Run each pipeline, every transform forced on, on its split's narrowest and shortest
    image (blank): a size-bound transform that fits those fits all (a `RandomCrop` larger than
    some photos once ended the first epoch in a traceback). A failure names the key and image."""
    for where, steps, split in (("augmentation.train", augmentation.train, train),
                                ("augmentation.val", augmentation.val, val)):
        if not steps:
            continue
        compose = build_augmentation(steps, augmentation.min_area, augmentation.min_visibility,
                                     where)
        for transform in compose.transforms:
            transform.p = 1.0  # a transform applied with p < 1 fails on some epochs, not on none
        records = [split.coco.imgs[i] for i in split.image_ids]
        if not records:
            continue
        narrowest = min(records, key=lambda r: (r["width"], r["height"]))
        shortest = min(records, key=lambda r: (r["height"], r["width"]))
        for record in [narrowest] if narrowest is shortest else [narrowest, shortest]:
            height, width = round(record["height"]), round(record["width"])
            try:
                compose(image=np.zeros((height, width, 3), dtype=np.uint8),
                        bboxes=np.zeros((0, 4), dtype=np.float32), category_ids=[])
            except Exception as exc:  # whatever the user's pipeline raises on a real size
                raise UserInputError(
                    f"fails on image id {record['id']} of {split.annotation_file} "
                    f"({record['file_name']}, {width}x{height} px, the split's smallest): "
                    f"{type(exc).__name__}: {one_line(exc)}", key=where) from None
