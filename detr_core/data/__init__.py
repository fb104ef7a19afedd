"""Datasets: COCO-format splits on disk read and validated (`coco`, `image_check`), the one
image loader (`image_io`), the synthetic default (`synthetic`, `scenes`), augmentation
(`augment`; run once on a split's smallest images: `pipeline_check`), the torch dataset
and collate function (`dataset`) and the one-time preparation a run or a search starts with
(`prepare`).

Imports: `detr_core.files`, `detr_core.config`.

Public names (other packages import these, not the modules): `build_augmentation`,
`check_pipelines_fit`, `coco_paths`, `CocoDetectionDataset`, `CocoSplit`, `crowded_images_note`,
`dataset_dir`, `default_cache_root`, `DEFAULT_THREADS`, `DetrCollator`,
`ensure_synthetic_dataset`, `evict_from_page_cache`, `find_image_problems`, `ImageRecord`,
`ImageSummary`, `LabelMap`, `load_coco_split`, `load_rgb`, `prepare_data`, `PreparedData`,
`split_summary`, `UnreadableImageError`.
"""

from __future__ import annotations

from detr_core.data.augment import build_augmentation
from detr_core.data.coco import CocoSplit, LabelMap, load_coco_split
from detr_core.data.dataset import CocoDetectionDataset, DetrCollator
from detr_core.data.image_check import (
    DEFAULT_THREADS,
    ImageRecord,
    ImageSummary,
    UnreadableImageError,
    evict_from_page_cache,
    find_image_problems,
)
from detr_core.data.image_io import load_rgb
from detr_core.data.pipeline_check import check_pipelines_fit
from detr_core.data.prepare import (
    PreparedData,
    coco_paths,
    crowded_images_note,
    prepare_data,
    split_summary,
)
from detr_core.data.synthetic import dataset_dir, default_cache_root, ensure_synthetic_dataset

__all__ = [
    "DEFAULT_THREADS",
    "CocoDetectionDataset",
    "CocoSplit",
    "DetrCollator",
    "ImageRecord",
    "ImageSummary",
    "LabelMap",
    "PreparedData",
    "UnreadableImageError",
    "build_augmentation",
    "check_pipelines_fit",
    "coco_paths",
    "crowded_images_note",
    "dataset_dir",
    "default_cache_root",
    "ensure_synthetic_dataset",
    "evict_from_page_cache",
    "find_image_problems",
    "load_coco_split",
    "load_rgb",
    "prepare_data",
    "split_summary",
]
