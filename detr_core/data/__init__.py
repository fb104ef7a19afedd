"""Datasets: COCO-format splits on disk read and validated (`coco`, `image_check`), the one
image loader (`image_io`), the synthetic default (`synthetic`, `scenes`), augmentation
(`augment`; run once on a split's smallest images: `pipeline_check`), the torch dataset
and collate function (`dataset`) and the one-time preparation a run or a search starts with
(`prepare`).

Imports: `detr_core.files`, `detr_core.config`.
"""
