"""detr_core: fine-tuning DETR-family detectors as a library. No Ray: `search/` builds on it.

Sub-packages in layers, each importing only the ones before it (tests/test_layers.py): files,
config, data, model, evaluation, training; the entry points on top: `train.py` (`train_run`, one
diary "version"), `evaluate.py`, `predict.py`, `pretrain.py` (README, "Layout").
"""

__version__ = "0.1.0"
