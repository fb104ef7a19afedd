"""What one `detr_core` run writes into its output folder, by name: defined once.

    <output-dir>/
      eval_history.jsonl      one JSON object per evaluation (step + every eval metric)
      checkpoints/            the Trainer's best-step checkpoint (model + optimizer state)
        checkpoint-N/ema/     the averaged weights at that step (a run with `ema:`)
      tensorboard/            TensorBoard event files
      best_model/             `save_pretrained` folder of the best step, reloaded and re-saved
        best_step.json        which step, by which metric, with which value
        test_metrics.json     test-split metrics of the best step (when there is a test split)
        test_predictions.json its detections in COCO results format
        test_detections.png   test images: ground truth beside confident detections
        categories.json       COCO category ids and names, in the model's label order

The search layer reads these names from here instead of spelling them again.
"""

EVAL_HISTORY_FILE = "eval_history.jsonl"
CHECKPOINTS_DIR = "checkpoints"
EMA_DIR = "ema"
TENSORBOARD_DIR = "tensorboard"
BEST_MODEL_DIR = "best_model"
BEST_STEP_FILE = "best_step.json"
TEST_METRICS_FILE = "test_metrics.json"
CATEGORIES_FILE = "categories.json"


def metrics_file(split: str) -> str:
    """`test_metrics.json` and its siblings for other splits (`val_metrics.json`)."""
    return f"{split}_metrics.json"


def predictions_file(split: str) -> str:
    """Detections of a split in COCO results format (`test_predictions.json`)."""
    return f"{split}_predictions.json"


def detections_image(split: str) -> str:
    """Ground truth beside detections for the first images of a split (`test_detections.png`)."""
    return f"{split}_detections.png"
