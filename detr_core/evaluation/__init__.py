"""Evaluation: decoded detections and COCO mAP, recall, precision, localisation (`metrics`), and
drawings (`visualize`); the test report is `detr_core/evaluate.py`, prediction `predict.py`.

Imports: `detr_core.files`, `detr_core.config`, `detr_core.data`, `detr_core.model`.
"""
