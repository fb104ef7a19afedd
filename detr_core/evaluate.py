"""The diary's test numbers for a trained model, computed instead of read off by eye: written
beside the model as `<split>_metrics.json` and `<split>_predictions.json`, printed as a table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from detr_core.config.run_config import RunConfig, load_default_run_config, load_run_config
from detr_core.data.dataset import CocoDetectionDataset, DetrCollator, build_augmentation
from detr_core.data.prepare import PreparedData, prepare_data
from detr_core.evaluation.metrics import (
    ImageBoxes,
    best_f1_threshold,
    decode_predictions,
    decode_targets,
    detection_metrics,
    threshold_sweep,
)
from detr_core.evaluation.visualize import split_detection_grid
from detr_core.files import file_io
from detr_core.files.errors import ArgumentParser, UserInputError, errors_from, exit_on_user_error
from detr_core.model.build import build_image_processor, load_image_processor, load_trained_model
from detr_core.model.families import family_of_model
from detr_core.model.model_check import check_model_folder

#: (label, metric) rows of the printed table: detection quality first, then localisation.
REPORT_ROWS = (
    ("mAP@.5", "map_50"), ("recall (IoU>=.5)", "recall"), ("precision (IoU>=.5)", "precision"),
    ("mAP@[.5:.95]", "map"), ("mAP@.75", "map_75"), ("IoU mean (pairs found)", "iou_mean"),
    ("IoU std (pairs found)", "iou_std"), ("centre error px mean", "center_error_px"),
    ("centre error px std", "center_error_px_std"), ("missed objects", "missed"),
    ("ground-truth objects", "num_gt"))


@torch.no_grad()
def predict(model: Any, dataset: CocoDetectionDataset, processor: Any, batch_size: int
            ) -> tuple[list[ImageBoxes], list[ImageBoxes]]:
    """Detections and ground truth of a dataset in original pixels (on the GPU if any)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    family = family_of_model(model)
    model.to(device).eval()
    predictions, targets = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False,
                            collate_fn=DetrCollator(processor)):
        outputs = model(pixel_values=batch["pixel_values"].to(device),
                        pixel_mask=batch["pixel_mask"].to(device))
        predictions.extend(decode_predictions(outputs.logits.cpu(), outputs.pred_boxes.cpu(),
                                              batch["labels"], family))
        targets.extend(decode_targets(batch["labels"]))
    return predictions, targets


def evaluate_prepared(model_dir: Path, config: RunConfig, data: PreparedData, split: str,
                      dataset: CocoDetectionDataset | None = None, processor: Any = None,
                      thresholds: Sequence[float] = ()) -> dict[str, Any]:
    """Metrics of `model_dir` on one split; writes predictions and a detections image beside it."""
    folder = Path(model_dir)
    if processor is None:
        processor = (load_image_processor(model_dir)
                     if (folder / "preprocessor_config.json").is_file()
                     else build_image_processor(config.model))
    if dataset is None:
        dataset = CocoDetectionDataset(data.split(split), data.label_map, build_augmentation(
            [], 0.0, 0.0, "augmentation.val", seed=config.seed))
    model = load_trained_model(model_dir, config.iou_loss)
    predictions, targets = predict(model, dataset, processor, config.evaluation.batch_size)
    threshold = config.evaluation.score_threshold
    metrics: dict[str, Any] = detection_metrics(predictions, targets, data.label_map.names,
                                                threshold)
    if thresholds:
        metrics["threshold_sweep"] = threshold_sweep(predictions, targets, thresholds)
        metrics["best_f1_threshold"] = best_f1_threshold(metrics["threshold_sweep"])
    metrics.update(missed=int(metrics["missed"]), num_gt=int(metrics["num_gt"]), split=split,
                   num_images=len(dataset), score_threshold=threshold, model_dir=str(model_dir))
    results = [{"image_id": pred.image_id, "category_id": data.label_map.category_of(label),
                "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score}  # COCO results format
               for pred in predictions for (x0, y0, x1, y1), label, score in zip(
                   pred.boxes.tolist(), pred.labels.tolist(), pred.scores.tolist(), strict=True)]
    file_io.write_text_atomic(folder / file_io.predictions_file(split), json.dumps(results))
    split_detection_grid(data.split(split), data.label_map.names, data.label_map.category_of,
                         results, threshold, folder / file_io.detections_image(split))
    return metrics


def evaluate_model(model_dir: str | Path, config: RunConfig, split: str = "test",
                   thresholds: Sequence[float] = ()) -> dict[str, Any]:
    """Prepare the run's data, evaluate `model_dir` on `split`, write `<split>_metrics.json`."""
    model_dir = Path(model_dir)
    check_model_folder(model_dir, key="--model")
    data = prepare_data(config.data)
    if getattr(data, split, None) is None:
        raise UserInputError(f"this run config has no {split} split", key="data")
    metrics = evaluate_prepared(model_dir, config, data, split, thresholds=thresholds)
    write_report(metrics, model_dir / file_io.metrics_file(split))
    return metrics


def write_report(metrics: dict[str, Any], path: Path) -> None:
    """JSON beside the model (NaN written as null), atomically."""
    file_io.write_json_atomic(path, {k: None if isinstance(v, float) and math.isnan(v) else v
                                     for k, v in metrics.items()})


def print_report(metrics: dict[str, Any], title: str = "") -> None:
    """Print the metrics as a two-column text table (per-class AP and any threshold sweep below)."""
    lines = [title] if title else []
    width = max(len(label) for label, _ in REPORT_ROWS)
    for label, key in REPORT_ROWS:
        value = metrics.get(key)
        text = "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else value
        lines.append(f"  {label:<{width}}  {text}")
    for name, ap in sorted(metrics.get("per_class_ap", {}).items()):
        lines.append(f"  {'AP ' + name:<{width}}  {ap:.4f}")
    if metrics.get("threshold_sweep"):
        lines.append("  score threshold   recall  precision      F1  detections")
    for row in metrics.get("threshold_sweep") or ():
        mark = "  <- best F1" if row["score_threshold"] == metrics.get("best_f1_threshold") else ""
        lines.append(f"  {row['score_threshold']:>15.2f}  {row['recall']:7.4f}  "
                     f"{row['precision']:9.4f}  {row['f1']:6.4f}  {row['detections']:>10}{mark}")
    print("\n".join(lines))


def _thresholds(text: str) -> tuple[float, ...]:
    """`0.3,0.4,0.5` -> (0.3, 0.4, 0.5), each in [0, 1]; argparse's one-line error otherwise."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated numbers: {text!r}") from None
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"thresholds are scores in [0, 1], got {text!r}")
    return values


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m detr_core.evaluate", description="Evaluate a "
                            "trained DETR (a save_pretrained folder) on a split of a run's data.")
    parser.add_argument("--model", type=Path, required=True, help="save_pretrained folder")
    parser.add_argument("--config", type=Path,
                        help="run YAML naming the data (default: the embedded default)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--thresholds", type=_thresholds, default=(),
                        help="score thresholds to sweep, e.g. 0.3,0.4,0.5: recall, precision "
                             "and F1 at each (choose on val, never on test)")
    args = parser.parse_args(argv)
    config = load_run_config(args.config) if args.config else load_default_run_config()
    with errors_from(args.config):  # `data: no test split` is about that file
        metrics = evaluate_model(args.model, config, args.split, args.thresholds)
    print_report(metrics, title=f"{args.split} metrics of {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
