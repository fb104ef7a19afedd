"""detr_core: DETR fine-tuning as a library.

One YAML file is one run (`detr_core.config`); `detr_core.train.train_run` fine-tunes a
`DetrForObjectDetection` with the Hugging Face `Trainer`, evaluates at every logging step and
keeps the best step; `detr_core.evaluate` computes the test-set numbers the training diary
tracked by hand (COCO mAP, IoU mean/std, centre error in pixels). No Ray in here: the search
layer (`search/`) builds on the callback hook in `detr_core.train`.
"""

__version__ = "0.1.0"
