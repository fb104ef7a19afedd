"""Evaluation: outputs decoded to boxes in original pixels, COCO mAP, recall, precision and the
diary's localisation numbers (`metrics`), and drawings (`visualize`). The test report is
`detr_core/evaluate.py`, prediction on a folder `detr_core/predict.py`.

Imports: `detr_core.files`, `detr_core.config`, `detr_core.data`, `detr_core.model`.
"""
