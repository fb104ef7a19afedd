"""Evaluation and inference: DETR outputs as boxes in original pixels (`detections`),
COCO mAP, recall, precision and the diary's localisation numbers (`metrics`), the
test-split report (`evaluate`), drawings (`visualize`) and prediction on a folder of
images (`predict`).

Imports: `detr_core.files`, `detr_core.config`, `detr_core.data`, `detr_core.model`.
"""
