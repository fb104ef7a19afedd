"""detr_core.evaluation.metrics / detections / boxes: mAP equals COCOeval, localisation, pixel
mapping."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from detr_core.config.run_config import DataConfig, ModelConfig
from detr_core.data.dataset import CocoDetectionDataset, DetrCollator, build_augmentation
from detr_core.data.prepare import prepare_data
from detr_core.evaluation.metrics import (
    ImageBoxes,
    best_f1_threshold,
    coco_map,
    decode_predictions,
    decode_targets,
    detection_metrics,
    localisation,
    precision,
    recall,
    threshold_sweep,
)
from detr_core.model.build import build_image_processor
from detr_core.model.families import FAMILIES
from detr_core.model.losses import box_centres, cxcywh_to_xyxy, to_original_pixels

CLASS_NAMES = ("car", "person", "sign")

# Ground truth per image: (label, [x, y, w, h]); image 4 has no object.
GROUND_TRUTH: dict[int, list[tuple[int, list[float]]]] = {
    1: [(0, [10, 10, 40, 30]), (1, [60, 20, 20, 50]), (2, [5, 60, 10, 10])],
    2: [(0, [0, 0, 30, 30]), (0, [50, 50, 40, 40])],
    3: [(1, [20, 20, 30, 60]), (2, [70, 10, 12, 12]), (2, [70, 70, 15, 15])],
    4: [],
}

# Detections per image: (label, [x, y, w, h], score). Exact hits, loose boxes (IoU between
# .5 and .75), a duplicate, a wrong class, false positives (one on the empty image), misses.
DETECTIONS: dict[int, list[tuple[int, list[float], float]]] = {
    1: [(0, [12, 11, 40, 30], 0.95), (1, [60, 26, 20, 50], 0.80), (1, [61, 21, 20, 48], 0.40),
        (2, [40, 60, 10, 10], 0.30), (0, [60, 20, 20, 50], 0.20)],
    2: [(0, [0, 0, 30, 30], 0.90), (0, [58, 50, 40, 40], 0.60), (1, [50, 50, 40, 40], 0.55)],
    3: [(1, [20, 30, 30, 60], 0.70), (2, [70, 10, 12, 12], 0.85), (0, [0, 0, 5, 5], 0.10)],
    4: [(2, [30, 30, 10, 10], 0.50)],
}


# Crowd regions per image: (label, [x, y, w, h]). Image 2's lies under the confident class-1 box
# that matches no object there; image 4's under the false positive on the empty image; image
# 3's under a class-1 box that hits its object at IoU .71, so only at IoU >= .75 is it ignored.
CROWDS: dict[int, list[tuple[int, list[float]]]] = {
    2: [(1, [45, 45, 55, 55])],
    3: [(1, [15, 25, 40, 70])],
    4: [(2, [25, 25, 20, 20])],
}


def xyxy(box: list[float]) -> list[float]:
    x, y, w, h = box
    return [x, y, x + w, y + h]


def image_boxes(crowds: dict[int, list[tuple[int, list[float]]]] | None = None
                ) -> tuple[list[ImageBoxes], list[ImageBoxes]]:
    predictions, targets = [], []
    for image_id, gts in GROUND_TRUTH.items():
        crowd = (crowds or {}).get(image_id, [])
        targets.append(ImageBoxes(
            image_id=image_id,
            boxes=torch.tensor([xyxy(b) for _, b in gts], dtype=torch.float32).reshape(-1, 4),
            labels=torch.tensor([label for label, _ in gts], dtype=torch.long),
            crowd_boxes=torch.tensor([xyxy(b) for _, b in crowd],
                                     dtype=torch.float32).reshape(-1, 4),
            crowd_labels=torch.tensor([label for label, _ in crowd], dtype=torch.long),
        ))
        dets = DETECTIONS[image_id]
        predictions.append(ImageBoxes(
            image_id=image_id,
            boxes=torch.tensor([xyxy(b) for _, b, _ in dets], dtype=torch.float32).reshape(-1, 4),
            labels=torch.tensor([label for label, _, _ in dets], dtype=torch.long),
            scores=torch.tensor([s for _, _, s in dets], dtype=torch.float32),
        ))
    return predictions, targets


def pycocotools_reference(tmp_path: Path, crowds: dict[int, list[tuple[int, list[float]]]]
                          | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """COCOeval run by hand on a ground-truth JSON on disk and `loadRes` of the detections."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    category_of = {label: 10 + label for label in range(len(CLASS_NAMES))}  # not 0-based
    gt = {
        "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.png"}
                   for i in GROUND_TRUTH],
        "annotations": [
            {"id": n, "image_id": i, "category_id": category_of[label], "bbox": box,
             "area": box[2] * box[3], "iscrowd": crowd}
            for n, (i, label, box, crowd) in enumerate(
                [*((i, label, box, 0) for i, gts in GROUND_TRUTH.items() for label, box in gts),
                 *((i, label, box, 1) for i, gts in (crowds or {}).items()
                   for label, box in gts)],
                start=1)
        ],
        "categories": [{"id": category_of[k], "name": n} for k, n in enumerate(CLASS_NAMES)],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    results = [{"image_id": i, "category_id": category_of[label], "bbox": box, "score": score}
               for i, dets in DETECTIONS.items() for label, box, score in dets]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(path))
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    per_class = {}
    for k, name in enumerate(CLASS_NAMES):  # catIds are sorted: index k is class k
        precision = evaluator.eval["precision"][:, :, k, 0, -1]  # all areas, maxDets=100
        per_class[name] = float(precision[precision > -1].mean())
    return evaluator.stats, per_class


@pytest.mark.parametrize("crowds", [None, CROWDS], ids=["no-crowd", "crowd-regions"])
def test_coco_map_equals_cocoeval(tmp_path: Path, crowds: Any) -> None:
    """Crowd regions are ignore regions for COCOeval: ours gives the same numbers."""
    stats, per_class = pycocotools_reference(tmp_path, crowds)
    predictions, targets = image_boxes(crowds)
    result = coco_map(predictions, targets, CLASS_NAMES)
    assert 0.2 < stats[0] < 0.9  # a non-trivial case: neither perfect nor empty
    if crowds:  # and the crowds change the answer, so the comparison could fail
        assert stats[0] != pytest.approx(pycocotools_reference(tmp_path)[0][0], abs=1e-6)
    assert result["map"] == pytest.approx(stats[0], abs=1e-6)
    assert result["map_50"] == pytest.approx(stats[1], abs=1e-6)
    assert result["map_75"] == pytest.approx(stats[2], abs=1e-6)
    assert set(result["per_class_ap"]) == set(CLASS_NAMES)
    for name in CLASS_NAMES:
        assert result["per_class_ap"][name] == pytest.approx(per_class[name], abs=1e-6), name
    # the evaluations during training skip per-class AP: the same summary numbers
    summary = coco_map(predictions, targets, CLASS_NAMES, per_class=False)
    assert "per_class_ap" not in summary
    assert {k: summary[k] for k in ("map", "map_50", "map_75")} == pytest.approx(
        {k: result[k] for k in ("map", "map_50", "map_75")}, abs=1e-9)


def test_coco_map_perfect_and_class_without_ground_truth() -> None:
    targets = [ImageBoxes(1, torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([1]))]
    predictions = [ImageBoxes(1, torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([1]),
                              torch.tensor([0.9]))]
    result = coco_map(predictions, targets, CLASS_NAMES)
    assert result["map"] == pytest.approx(1.0)
    assert result["map_50"] == pytest.approx(1.0)
    assert result["per_class_ap"] == {"person": pytest.approx(1.0)}  # no gt: omitted, not -1


def test_localisation_by_hand() -> None:
    """Best-overlapping confident detection per ground truth, any class; misses counted.

    gt1 [0,0,10,10]: detections with IoU .5 and .8 -> .8, centre (5,5) vs (5,4): 1 px.
    gt2 [20,20,30,30]: a wrong-class detection shifted 2 px (IoU 2/3, 2 px) and an exact one
    below the score threshold (ignored). gt3: only a far-away detection -> missed.
    gt4: an image without detections -> missed.
    """
    targets = [
        ImageBoxes(1, torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), torch.tensor([0, 1])),
        ImageBoxes(2, torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0])),
        ImageBoxes(3, torch.tensor([[0.0, 0, 4, 4]]), torch.tensor([2])),
        ImageBoxes(4, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)),
    ]
    predictions = [
        ImageBoxes(1, torch.tensor([[0.0, 0, 10, 5], [0, 0, 10, 8], [22, 20, 32, 30],
                                    [20, 20, 30, 30]]),
                   torch.tensor([0, 0, 2, 1]), torch.tensor([0.9, 0.95, 0.8, 0.3])),
        ImageBoxes(2, torch.tensor([[50.0, 50, 60, 60]]), torch.tensor([0]), torch.tensor([0.9])),
        ImageBoxes(3, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0)),
        ImageBoxes(4, torch.tensor([[1.0, 1, 5, 5]]), torch.tensor([0]), torch.tensor([0.99])),
    ]
    result = localisation(predictions, targets, score_threshold=0.5)
    ious = [0.8, 2 / 3]
    assert result["iou_mean"] == pytest.approx(np.mean(ious), abs=1e-6)
    assert result["iou_std"] == pytest.approx(np.std(ious), abs=1e-6)
    assert result["center_error_px"] == pytest.approx(1.5, abs=1e-6)
    assert result["center_error_px_std"] == pytest.approx(0.5, abs=1e-6)
    assert result["missed"] == 2
    assert result["num_gt"] == 4
    # with threshold 0.2 the exact detection of gt2 counts: IoU 1, error 0
    loose = localisation(predictions, targets, score_threshold=0.2)
    assert loose["iou_mean"] == pytest.approx((0.8 + 1.0) / 2, abs=1e-6)
    assert loose["center_error_px"] == pytest.approx(0.5, abs=1e-6)


def _boxes(image_id: int, boxes: list[list[float]], labels: list[int],
           scores: list[float] | None = None) -> ImageBoxes:
    return ImageBoxes(image_id, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                      torch.tensor(labels, dtype=torch.long),
                      None if scores is None else torch.tensor(scores, dtype=torch.float32))


def test_recall_by_hand() -> None:
    """One-to-one, same class, IoU >= .5, score >= threshold, greedy by score.

    image 1: gt A (class 0) is found by the .9 detection (IoU .8); the .8 duplicate of A finds
    nothing more; gt B (class 1) only has an exact box of the wrong class -> not found.
    image 2: gt C has a confident box of IoU .4 (too loose) and an exact one below threshold.
    image 3: gt D found exactly. image 4: no ground truth, a false positive changes nothing.
    image 5: two neighbours of one class, each claimed by the detection that overlaps it most.
    Found: A, D, E, F of 6 -> 4/6; with threshold .2, C's exact box counts too -> 5/6.
    """
    targets = [
        _boxes(1, [[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1]),
        _boxes(2, [[0, 0, 10, 10]], [0]),
        _boxes(3, [[0, 0, 4, 4]], [2]),
        _boxes(4, [], []),
        _boxes(5, [[0, 0, 10, 10], [5, 0, 15, 10]], [0, 0]),
    ]
    predictions = [
        _boxes(1, [[0, 0, 10, 8], [0, 0, 10, 10], [20, 20, 30, 30]], [0, 0, 0], [.9, .8, .95]),
        _boxes(2, [[0, 0, 10, 4], [0, 0, 10, 10]], [0, 0], [.9, .3]),
        _boxes(3, [[0, 0, 4, 4]], [2], [.99]),
        _boxes(4, [[1, 1, 5, 5]], [0], [.99]),
        _boxes(5, [[4, 0, 14, 10], [0, 0, 10, 10]], [0, 0], [.9, .8]),
    ]
    assert recall(predictions, targets, score_threshold=0.5) == pytest.approx(4 / 6)
    assert recall(predictions, targets, score_threshold=0.2) == pytest.approx(5 / 6)
    # at IoU .85 the .9 box of A is too loose, so its exact (.8) duplicate claims A; F's is too
    assert recall(predictions, targets, score_threshold=0.5, iou_threshold=0.85) == \
        pytest.approx(3 / 6)
    assert math.isnan(recall(predictions[3:4], targets[3:4], score_threshold=0.5))
    # the same number under its canonical name, beside mAP and the localisation numbers
    metrics = detection_metrics(predictions, targets, ("a", "b", "c"), score_threshold=0.5)
    assert metrics["recall"] == pytest.approx(4 / 6)
    assert {"map", "map_50", "map_75", "per_class_ap", "iou_mean", "missed"} <= set(metrics)

    # precision, same matching: confident boxes 3 + 1 + 1 + 1 + 2 = 8, of which 4 matched (the
    # duplicate of A, B's wrong-class box, C's loose box, the false positive on image 4 did not)
    assert precision(predictions, targets, score_threshold=0.5) == pytest.approx(4 / 8)
    assert metrics["precision"] == pytest.approx(4 / 8)
    # with threshold .2, C's exact box is a ninth confident detection and a fifth match
    assert precision(predictions, targets, score_threshold=0.2) == pytest.approx(5 / 9)
    # no confident detection at all: precision is undefined, not 0 or 1
    assert math.isnan(precision(predictions[1:2], targets[1:2], score_threshold=0.95))


def test_detections_on_crowd_regions_are_ignored() -> None:
    """Confident boxes at .5: 2 + 3 + 2 + 1 = 8, 6 of them hits. Image 2's unmatched class-1 box
    and image 4's false positive lie on crowd regions of their class: neither hits nor false
    alarms, so precision 6/8 -> 6/6; recall stays 6/8 (a crowd region is no object to find).
    The ignored box of image 2 was the best overlap (IoU 1) of the object under it; with the
    crowd that object pairs with its own class's box (IoU 1280/1920)."""
    plain_preds, plain_targets = image_boxes()
    preds, targets = image_boxes(CROWDS)
    assert precision(plain_preds, plain_targets, 0.5) == pytest.approx(6 / 8)
    assert precision(preds, targets, 0.5) == pytest.approx(1.0)
    assert recall(plain_preds, plain_targets, 0.5) == recall(preds, targets, 0.5) == \
        pytest.approx(6 / 8)
    assert localisation(plain_preds[1:2], plain_targets[1:2], 0.5)["iou_mean"] == \
        pytest.approx(1.0)
    assert localisation(preds[1:2], targets[1:2], 0.5)["iou_mean"] == \
        pytest.approx((1.0 + 1280 / 1920) / 2)
    metrics = detection_metrics(preds, targets, CLASS_NAMES, 0.5)
    assert metrics["num_gt"] == 8 and metrics["precision"] == pytest.approx(1.0)


def test_duplicates_lower_precision_not_recall() -> None:
    """Three confident boxes on one object: recall 1, precision 1/3 (what a report must show)."""
    targets = [_boxes(1, [[10, 10, 50, 50]], [0])]
    one = [_boxes(1, [[10, 10, 50, 50]], [0], [.9])]
    three = [_boxes(1, [[10, 10, 50, 50], [11, 10, 50, 51], [10, 12, 49, 50]], [0, 0, 0],
                    [.9, .8, .7])]
    assert recall(one, targets, 0.5) == recall(three, targets, 0.5) == 1.0
    assert precision(one, targets, 0.5) == 1.0
    assert precision(three, targets, 0.5) == pytest.approx(1 / 3)


def test_localisation_nothing_found() -> None:
    targets = [ImageBoxes(1, torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0]))]
    predictions = [ImageBoxes(1, torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0]),
                              torch.tensor([0.1]))]
    result = localisation(predictions, targets, score_threshold=0.5)
    assert (result["missed"], result["num_gt"]) == (1, 1)
    assert math.isnan(result["center_error_px"])
    assert math.isnan(result["iou_std"])


def test_box_helpers() -> None:
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    torch.testing.assert_close(cxcywh_to_xyxy(boxes), torch.tensor([[0.4, 0.3, 0.6, 0.7]]))
    torch.testing.assert_close(box_centres(torch.tensor([[2.0, 4, 6, 10]])),
                               torch.tensor([[4.0, 7.0]]))
    # a 50 (h) x 100 (w) image resized to 48 x 96 inside a 96 x 96 canvas
    pixels = to_original_pixels(torch.tensor([[0.25, 0.25, 0.5, 0.5]]), torch.tensor([96, 96]),
                                torch.tensor([48, 96]), torch.tensor([50, 100]))
    torch.testing.assert_close(pixels, torch.tensor([[0.0, 0.0, 50.0, 50.0]]))


@pytest.mark.parametrize("canvas", [96, 64])
def test_decode_back_to_original_pixels(coco_writer: Any, canvas: int) -> None:
    """Real processor + collator: decoded targets are the COCO boxes of non-square images."""
    images = [{"id": 1, "width": 100, "height": 50}, {"id": 2, "width": 50, "height": 100},
              {"id": 3, "width": 70, "height": 33}]
    anns = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 5, 30, 20]},
        {"image_id": 1, "category_id": 2, "bbox": [60.5, 12.25, 39.5, 37.75]},
        {"image_id": 2, "category_id": 2, "bbox": [3, 40, 44, 50]},
        {"image_id": 3, "category_id": 1, "bbox": [7, 3, 51, 29]},
    ]
    split = coco_writer("train", images, anns, {1: "a", 2: "b"})
    data = prepare_data(DataConfig(train=split, val=split), quiet=True)
    dataset = CocoDetectionDataset(data.train, data.label_map,
                                   build_augmentation([], 0.0, 0.0, "augmentation.val"))
    processor = build_image_processor(ModelConfig(preset="tiny", image_size=canvas))
    batch = DetrCollator(processor)([dataset[i] for i in range(3)])
    assert batch["labels"][0]["resized_size"].tolist() == [canvas // 2, canvas]
    assert batch["labels"][1]["resized_size"].tolist() == [canvas, canvas // 2]

    decoded = decode_targets(batch["labels"])
    assert [d.image_id for d in decoded] == [1, 2, 3]
    for item in decoded:
        expected = [xyxy(a["bbox"]) for a in anns if a["image_id"] == item.image_id]
        torch.testing.assert_close(item.boxes, torch.tensor(expected, dtype=torch.float32),
                                   atol=1e-3, rtol=0)
    assert decoded[0].labels.tolist() == [0, 1]

    # Predictions equal to the targets' normalised boxes map to the same pixels.
    queries = 3
    pred_boxes = torch.full((3, queries, 4), 0.5)
    logits = torch.zeros(3, queries, 3)
    for i, label in enumerate(batch["labels"]):
        pred_boxes[i, : len(label["boxes"])] = label["boxes"]
        logits[i, torch.arange(len(label["boxes"])), label["class_labels"]] = 5.0
    predicted = decode_predictions(logits, pred_boxes, batch["labels"], FAMILIES["detr"])
    for pred, target in zip(predicted, decoded, strict=True):
        n = len(target.boxes)
        torch.testing.assert_close(pred.boxes[:n], target.boxes, atol=1e-3, rtol=0)
        assert pred.labels[:n].tolist() == target.labels.tolist()
        assert (pred.scores[:n] > 0.9).all()
    # numpy labels (what the Trainer hands compute_metrics) decode the same
    as_numpy = [{k: v.numpy() for k, v in label.items()} for label in batch["labels"]]
    for a, b in zip(decode_targets(as_numpy), decoded, strict=True):
        torch.testing.assert_close(a.boxes, b.boxes)


def test_threshold_sweep_trades_recall_for_precision_by_hand() -> None:
    """Two objects; each has its right box (scores 0.9 and 0.6) and a duplicate of the first
    (0.4) plus a box on background (0.2). At 0.1 all 4 are shown: recall 1, precision 2/4;
    at 0.5 the two right boxes: recall 1, precision 1 (the best F1); at 0.7 only the 0.9 box:
    recall 1/2, precision 1."""
    targets = [ImageBoxes(1, torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]),
                          torch.tensor([0, 0]))]
    predictions = [ImageBoxes(1, torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30],
                                               [0.0, 0, 10, 10], [50, 50, 60, 60]]),
                              torch.tensor([0, 0, 0, 0]), torch.tensor([0.9, 0.6, 0.4, 0.2]))]
    rows = threshold_sweep(predictions, targets, [0.1, 0.3, 0.5, 0.7, 0.95])
    got = [(r["score_threshold"], r["recall"], r["precision"], r["detections"]) for r in rows]
    assert got[:4] == [(0.1, 1.0, 0.5, 4), (0.3, 1.0, pytest.approx(2 / 3), 3),
                       (0.5, 1.0, 1.0, 2), (0.7, 0.5, 1.0, 1)]
    assert rows[2]["f1"] == 1.0 and rows[3]["f1"] == pytest.approx(2 / 3)
    assert math.isnan(rows[4]["precision"]) and math.isnan(rows[4]["f1"])  # nothing shown
    assert best_f1_threshold(rows) == 0.5
    # a tie goes to the higher threshold (fewer boxes shown)
    assert best_f1_threshold([{"score_threshold": 0.3, "f1": 0.8},
                              {"score_threshold": 0.6, "f1": 0.8}]) == 0.6
    assert best_f1_threshold([{"score_threshold": 0.3, "f1": math.nan}]) is None
