"""detr_core: fine-tuning DETR-family detectors as a library. No Ray: `search/` builds on it.

The house, bottom layer first; a sub-package imports only the ones above it in this list
(plain imports, from the module that defines the name; tests/test_layers.py holds the layers):

    files/       errors, text and YAML files, atomic writes, run layout, builtin: checkpoints
    config/      RunConfig dataclasses, dotted keys, TrainingArguments, metric names
    data/        COCO splits, the image loader, synthetic data, augmentation, collate
    model/       the family, from_pretrained / presets, IoU losses, backbone, recipes, checks
    evaluation/  detections, COCO metrics, drawings
    training/    the Trainer, backbone lr groups, EMA, evaluation events, preflight

The entry points sit on top and may import every layer: `train.py` (`train_run`, one diary
"version"; `python -m detr_core.train`), `evaluate.py` (the test report), `predict.py`
(detections for a folder of images), `pretrain.py` (the shipped checkpoints). The run config:
`detr_core.config.run_config.load_run_config`. A new metric is named in
`config/metric_names.py` and computed in `evaluation/metrics.py`.
"""

__version__ = "0.1.0"
