"""detr_core: fine-tuning DETR-family detectors as a library. No Ray: `search/` builds on it.

The house, bottom layer first; a sub-package imports only the ones above it in this list, and
only through their `__init__` (the public names each docstring lists):

    files/       errors, text and YAML files, atomic writes, run layout, builtin: checkpoints
    config/      RunConfig dataclasses, dotted keys, TrainingArguments, metric names
    data/        COCO splits, the image loader, synthetic data, augmentation, collate
    model/       the family, from_pretrained / presets, IoU losses, backbone, recipes, checks
    evaluation/  detections, COCO metrics, the test report, drawings, predict
    training/    train_run (one diary "version"), the Trainer, backbone lr groups, EMA,
                 evaluation events, preflight, pretrain

Entry points: `detr_core.train.train_run` (`python -m detr_core.train`),
`detr_core.evaluate`, `detr_core.predict`, `detr_core.pretrain` (short paths of the modules in
`training/` and `evaluation/`), `detr_core.config.load_run_config`. A new metric is named in
`config/metric_names.py` and computed in `evaluation/metrics.py`.
"""

__version__ = "0.1.0"
