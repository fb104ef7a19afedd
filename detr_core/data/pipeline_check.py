"""An augmentation pipeline run once on blank images of a split's smallest sizes, before training.

A pipeline can build and still fail on some images of the data: a `RandomCrop` of 200 x 200
on photos of mixed sizes, some smaller than that (albumentations' `CropSizeError`), ended the
first epoch in a traceback with the run's folder written. What a size-bound transform needs
holds for every image when it holds for the narrowest and for the shortest one, so those two
sizes (blank, no boxes) go through the pipeline with every transform forced to apply; a
failure is one line naming the pipeline's key and the image.
"""

from __future__ import annotations

from typing import Any

from detr_core.data.augment import build_augmentation
from detr_core.data.coco import CocoSplit
from detr_core.files.errors import UserInputError


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
