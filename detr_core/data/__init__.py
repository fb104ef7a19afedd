"""Datasets: COCO splits read and validated (`coco`), the image loader and image checks
(`images`), the synthetic default (`synthetic`), augmentation, the torch dataset and collate
(`dataset`) and the one-time preparation a run or a search starts with (`prepare`).

Imports: `detr_core.files`, `detr_core.config`.
"""
