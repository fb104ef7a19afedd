"""Datasets: COCO splits (`coco`), the image loader and checks (`images`), the synthetic default
(`synthetic`), augmentation, torch dataset and collate (`dataset`), preparation (`prepare`).

Imports: `detr_core.files`, `detr_core.config`.
"""
