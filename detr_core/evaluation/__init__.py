"""Evaluation and inference: DETR outputs as boxes in original pixels (`detections`),
COCO mAP, recall, precision and the diary's localisation numbers (`metrics`), the
test-split report (`evaluate`), drawings (`visualize`) and prediction on a folder of
images (`predict`).

Imports: `detr_core.files`, `detr_core.config`, `detr_core.data`, `detr_core.model`.

Public names (other packages import these, not the modules): `best_f1_threshold`, `coco_map`,
`decode_predictions`, `decode_targets`, `detection_metrics`, `evaluate_model`,
`evaluate_prepared`, `ImageBoxes`, `precision`, `predict_folder`, `print_report`, `recall`,
`threshold_sweep`, `write_report`.
"""

from __future__ import annotations

from detr_core.evaluation.detections import ImageBoxes, decode_predictions, decode_targets
from detr_core.evaluation.evaluate import (
    evaluate_model,
    evaluate_prepared,
    print_report,
    write_report,
)
from detr_core.evaluation.metrics import (
    best_f1_threshold,
    coco_map,
    detection_metrics,
    precision,
    recall,
    threshold_sweep,
)
from detr_core.evaluation.predict import predict_folder

__all__ = [
    "ImageBoxes",
    "best_f1_threshold",
    "coco_map",
    "decode_predictions",
    "decode_targets",
    "detection_metrics",
    "evaluate_model",
    "evaluate_prepared",
    "precision",
    "predict_folder",
    "print_report",
    "recall",
    "threshold_sweep",
    "write_report",
]
