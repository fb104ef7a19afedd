"""albumentations pipelines from YAML: `[{HorizontalFlip: {p: 0.5}}, {ColorJitter: {...}}]`.

Boxes travel with the image in COCO pixel format; boxes clipped to the image and those that
end up smaller than `min_area` (or less visible than `min_visibility`) are dropped together
with their labels.

Every pipeline is seeded: albumentations 2.x keeps its own random state (numpy Generator and
`random.Random`), independent of the global seeds, and without a seed it draws one from the
operating system, so a run's `seed` would not fix its augmentation. DataLoader worker
processes re-seed their copy (`detr_core.data.dataset`).

A validated COCO split as a torch `Dataset`, and the collate function that feeds DETR.

Items are (RGB image array, COCO annotations with contiguous labels) after augmentation; the
collate function runs the image processor on the whole batch (resize, normalise, pad to a fixed
square canvas, boxes to normalised cx,cy,w,h) and adds `pixel_mask`. Each label dict also gets
`resized_size`, the image's extent inside the padded canvas, so predictions can be mapped back
to original pixels exactly (`detr_core.model.losses.to_original_pixels`).

Images are read by `detr_core.data.images.load_rgb` (EXIF orientation applied, every mode as
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

An augmentation pipeline run once on blank images of a split's smallest sizes, before training.

A pipeline can build and still fail on some images of the data: a `RandomCrop` of 200 x 200
on photos of mixed sizes, some smaller than that (albumentations' `CropSizeError`), ended the
first epoch in a traceback with the run's folder written. What a size-bound transform needs
holds for every image when it holds for the narrowest and for the shortest one, so those two
sizes (blank, no boxes) go through the pipeline with every transform forced to apply; a
failure is one line naming the pipeline's key and the image.
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
from detr_core.data.images import ImageRecord, UnreadableImageError, image_error, load_rgb
from detr_core.files.errors import UserInputError


def build_augmentation(
    steps: list[Any], min_area: float, min_visibility: float, where: str, seed: int = 0
) -> Any:
    """An `A.Compose` (seeded with `seed`) from a list of one-key mappings.

    `where` names the YAML key in error messages.
    """
    import albumentations as A

    transforms = []
    for index, step in enumerate(steps):
        key = f"{where}[{index}]"
        if isinstance(step, str):
            name, kwargs = step, {}
        elif isinstance(step, dict) and len(step) == 1:
            name, kwargs = next(iter(step.items()))
            kwargs = {} if kwargs is None else kwargs
        else:
            raise UserInputError(f"expected `TransformName: {{arg: value}}`, got {step!r}", key=key)
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
    with warnings.catch_warnings():  # an empty list is valid: boxes are still clipped
        warnings.filterwarnings("ignore", message="Got processor for bboxes")
        return _compose(A, transforms, min_area, min_visibility, seed)


_PYDANTIC_HEADER = re.compile(r"^\d+ validation errors? for \w+$")
_PYDANTIC_DETAIL = re.compile(r"^\s+(?P<msg>.*?)(?: \[type=[^,\]]+(?:, input_value=(?P<value>.*?))?"
                              r"(?:, input_type=\w+)?\])?$")


def argument_problem(exc: BaseException) -> str:
    """One line for a transform's refusal of its arguments, naming the argument.

    albumentations validates arguments with pydantic, whose message is a block: "2 validation
    errors for InitSchema / brightness.tuple[float, float] / Input should be ...". It becomes
    `brightness: Input should be a valid tuple or a valid number (got 'x')`.
    """
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if not _PYDANTIC_HEADER.match(lines[0].strip()):
        return " ".join(lines[0].split())
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
    parts = []
    for name, messages in fields.items():
        got = f" (got {values[name]})" if name in values else ""
        parts.append(f"{name}: {' or '.join(messages)}{got}")
    return "; ".join(parts) or " ".join(lines[0].split())


def _compose(A: Any, transforms: list[Any], min_area: float, min_visibility: float,
             seed: int) -> Any:
    """The seeded `Compose`. albumentations filters the boxes (clip, `min_area`,
    `min_visibility`) after every transform, colour transforms included, and once more at the
    end. When no transform after the first can move boxes, those filters are the end's filter
    applied to the same boxes again, so it is left to the end: on the default pipeline (flip,
    then colour jitter) that is a third of the augmentation's time, for the same pixels, boxes
    and labels. With a box-moving transform later in the list the filter after each transform
    stays: it drops boxes below `min_area` before a later scale-up could rescue them."""
    later_moves_boxes = any(not isinstance(t, A.ImageOnlyTransform) for t in transforms[1:])
    return A.Compose(
        transforms,
        bbox_params=A.BboxParams(
            format="coco",
            label_fields=["category_ids"],
            min_area=min_area,
            min_visibility=min_visibility,
            clip=True,
            check_each_transform=later_moves_boxes,
        ),
        seed=seed,
    )


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


def smallest_images(split: CocoSplit) -> list[dict[str, Any]]:
    """The narrowest and the shortest image record of `split` (one record when they agree)."""
    records = [split.coco.imgs[i] for i in split.image_ids]
    if not records:
        return []
    narrowest = min(records, key=lambda r: (r["width"], r["height"]))
    shortest = min(records, key=lambda r: (r["height"], r["width"]))
    return [narrowest] if narrowest is shortest else [narrowest, shortest]


def check_pipeline_fits(steps: list[Any], augmentation: Any, where: str,
                        split: CocoSplit) -> None:
    """`steps` (the pipeline at `where`, e.g. `augmentation.train`; `augmentation`: the run's
    `augmentation:` section, for its box filters) must take `split`'s smallest images; raises
    `UserInputError` naming the key, the image and the transform's complaint."""
    import numpy as np

    if not steps:
        return
    compose = build_augmentation(steps, augmentation.min_area, augmentation.min_visibility,
                                 where)
    for transform in compose.transforms:
        transform.p = 1.0  # a transform applied with p < 1 fails on some epochs, not on none
    for record in smallest_images(split):
        height, width = round(record["height"]), round(record["width"])
        try:
            compose(image=np.zeros((height, width, 3), dtype=np.uint8),
                    bboxes=np.zeros((0, 4), dtype=np.float32), category_ids=[])
        except Exception as exc:  # whatever the user's pipeline raises on a real size
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise UserInputError(
                f"fails on image id {record['id']} of {split.annotation_file} "
                f"({record['file_name']}, {width}x{height} px, the split's smallest): "
                f"{type(exc).__name__}: {message}", key=where) from None


def check_pipelines_fit(augmentation: Any, train: CocoSplit,
                        val: CocoSplit) -> None:
    """The train pipeline on the train split's smallest images, the val one on val's."""
    check_pipeline_fits(augmentation.train, augmentation, "augmentation.train", train)
    check_pipeline_fits(augmentation.val, augmentation, "augmentation.val", val)
