"""The diary's test numbers for a trained model, computed instead of read off by eye.

    python -m detr_core.evaluate --model outputs/run/best_model --config run.yaml --split test

COCO mAP family and per-class AP (pycocotools via torchmetrics), recall and precision at IoU
0.5 (confident detections matched one-to-one to ground truth of their class), IoU mean/std of
each ground truth with its best-matching detection ("IOU mu/std", over the pairs found), centre
error in pixels over the same pairs ("Detection Performance mu/std") and the number of missed
objects. Names are the canonical ones of `detr_core.config.metric_names`. Written as
`<split>_metrics.json` beside the model (plus `<split>_predictions.json` in COCO results
format) and printed as a table. `detr_core.train` runs this on the test split
automatically.
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
from detr_core.data.dataset import CocoDetectionDataset, DetrCollator
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
from detr_core.files.errors import ArgumentParser, UserInputError, errors_from, exit_on_user_error
from detr_core.files.file_io import (
    detections_image,
    metrics_file,
    predictions_file,
    write_json_atomic,
    write_text_atomic,
)
from detr_core.model.families import family_of_model
from detr_core.model.model_check import check_model_folder

#: (label, metric) rows of the printed table: detection quality first, then localisation.
REPORT_ROWS = (
    ("mAP@.5", "map_50"), ("recall (IoU>=.5)", "recall"), ("precision (IoU>=.5)", "precision"),
    ("mAP@[.5:.95]", "map"), ("mAP@.75", "map_75"),
    ("IoU mean (pairs found)", "iou_mean"), ("IoU std (pairs found)", "iou_std"),
    ("centre error px mean", "center_error_px"),
    ("centre error px std", "center_error_px_std"),
    ("missed objects", "missed"), ("ground-truth objects", "num_gt"),
)


def pick_device() -> torch.device:
    """The GPU when one is visible, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def predict(model: Any, dataset: CocoDetectionDataset, processor: Any, batch_size: int
            ) -> tuple[list[ImageBoxes], list[ImageBoxes]]:
    """Run the model over a dataset; detections and ground truth in original pixels."""
    device = pick_device()
    family = family_of_model(model)
    model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                        collate_fn=DetrCollator(processor))
    predictions, targets = [], []
    for batch in loader:
        outputs = model(pixel_values=batch["pixel_values"].to(device),
                        pixel_mask=batch["pixel_mask"].to(device))
        labels = batch["labels"]
        predictions.extend(decode_predictions(outputs.logits.cpu(), outputs.pred_boxes.cpu(),
                                              labels, family))
        targets.extend(decode_targets(labels))
    return predictions, targets


def coco_results(predictions: Sequence[ImageBoxes], category_of: Any) -> list[dict[str, Any]]:
    """Detections in COCO results format (original category ids, xywh pixels)."""
    results = []
    for pred in predictions:
        for box, label, score in zip(pred.boxes.tolist(), pred.labels.tolist(),
                                     pred.scores.tolist(), strict=True):
            x0, y0, x1, y1 = box
            results.append({"image_id": pred.image_id, "category_id": category_of(label),
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    return results


def evaluate_prepared(model_dir: Path, config: RunConfig, data: PreparedData, split: str,
                      dataset: CocoDetectionDataset | None = None, processor: Any = None,
                      thresholds: Sequence[float] = ()) -> dict[str, Any]:
    """Metrics of `model_dir` on one split of already prepared data; also writes predictions.
    `thresholds`: also recall / precision / F1 at each (`threshold_sweep`) and the best F1's."""
    from detr_core.model.build import (
        build_image_processor,
        load_image_processor,
        load_trained_model,
    )

    if processor is None:
        has_own = (Path(model_dir) / "preprocessor_config.json").is_file()
        processor = (load_image_processor(model_dir) if has_own
                     else build_image_processor(config.model))
    if dataset is None:
        from detr_core.data.dataset import build_augmentation

        dataset = CocoDetectionDataset(data.split(split), data.label_map,
                                       build_augmentation([], 0.0, 0.0, "augmentation.val",
                                                          seed=config.seed))
    model = load_trained_model(model_dir, config.iou_loss)
    predictions, targets = predict(model, dataset, processor, config.evaluation.batch_size)
    metrics: dict[str, Any] = detection_metrics(
        predictions, targets, data.label_map.names, config.evaluation.score_threshold)
    if thresholds:
        metrics["threshold_sweep"] = threshold_sweep(predictions, targets, thresholds)
        metrics["best_f1_threshold"] = best_f1_threshold(metrics["threshold_sweep"])
    metrics.update(
        missed=int(metrics["missed"]), num_gt=int(metrics["num_gt"]),
        split=split, num_images=len(dataset), score_threshold=config.evaluation.score_threshold,
        model_dir=str(model_dir),
    )
    results = coco_results(predictions, data.label_map.category_of)
    write_text_atomic(Path(model_dir) / predictions_file(split), json.dumps(results))
    split_detection_grid(data.split(split), data.label_map.names, data.label_map.category_of,
                         results, config.evaluation.score_threshold,
                         Path(model_dir) / detections_image(split))
    return metrics


def evaluate_model(model_dir: str | Path, config: RunConfig, split: str = "test",
                   thresholds: Sequence[float] = ()) -> dict[str, Any]:
    """Prepare the run's data and evaluate `model_dir` on `split` (`train`, `val` or `test`),
    with a sweep of score `thresholds` if any."""
    model_dir = Path(model_dir)
    check_model_folder(model_dir, key="--model")
    data = prepare_data(config.data)
    if getattr(data, split, None) is None:
        raise UserInputError(f"this run config has no {split} split", key="data")
    metrics = evaluate_prepared(model_dir, config, data, split, thresholds=thresholds)
    write_report(metrics, model_dir / metrics_file(split))
    return metrics


def write_report(metrics: dict[str, Any], path: Path) -> None:
    """JSON beside the model (NaN written as null so any JSON reader takes it), atomically."""
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    write_json_atomic(path, clean)


def format_report(metrics: dict[str, Any], title: str = "") -> str:
    """The metrics as a two-column text table (per-class AP listed below)."""
    lines = [title] if title else []
    width = max(len(label) for label, _ in REPORT_ROWS)
    for label, key in REPORT_ROWS:
        value = metrics.get(key)
        if value is None:
            text = "n/a"
        else:
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"  {label:<{width}}  {text}")
    for name, ap in sorted(metrics.get("per_class_ap", {}).items()):
        lines.append(f"  {'AP ' + name:<{width}}  {ap:.4f}")
    sweep = metrics.get("threshold_sweep")
    if sweep:
        lines.append("  score threshold   recall  precision      F1  detections")
        for row in sweep:
            mark = "  <- best F1" if row["score_threshold"] == metrics.get("best_f1_threshold") \
                else ""
            lines.append(f"  {row['score_threshold']:>15.2f}  {row['recall']:7.4f}  "
                         f"{row['precision']:9.4f}  {row['f1']:6.4f}  {row['detections']:>10}"
                         f"{mark}")
    return "\n".join(lines)


def print_report(metrics: dict[str, Any], title: str = "") -> None:
    print(format_report(metrics, title))


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m detr_core.evaluate",
        description="Evaluate a trained DETR (a save_pretrained folder) on a split of a run's "
        "data: mAP@.5, recall, precision, COCO mAP, IoU mean/std, centre error px mean/std, missed "
        "objects.",
    )
    parser.add_argument("--model", type=Path, required=True, help="save_pretrained folder")
    parser.add_argument("--config", type=Path,
                        help="run YAML naming the data (default: the embedded default)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--thresholds", type=_thresholds, default=(),
                        help="score thresholds to sweep, e.g. 0.3,0.4,0.5,0.6,0.7: recall, "
                             "precision and F1 at each, and the best F1's (choose the run's "
                             "evaluation.score_threshold on val, never on test)")
    return parser


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
    args = build_parser().parse_args(argv)
    config = load_run_config(args.config) if args.config else load_default_run_config()
    with errors_from(args.config):  # `data: no test split` is about that file
        metrics = evaluate_model(args.model, config, args.split, args.thresholds)
    print_report(metrics, title=f"{args.split} metrics of {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
