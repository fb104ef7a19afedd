"""detr_core.train / evaluate end to end on a tiny synthetic dataset (slow: real training).

One GIoU run (8 steps, evaluation every 2) is shared by most tests of this module; DIoU and
CIoU get a 2-step run each. All data is generated into the session's `DETR_SEARCH_CACHE`.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from detr_core.config.run_config import RunConfig, load_run_config
from detr_core.train import EvaluationEvent, RunResult, train_run

pytestmark = pytest.mark.slow

EVAL_KEYS = (
    "eval_loss", "eval_loss_bbox", "eval_loss_iou", "eval_loss_ce", "eval_cardinality_error",
    "eval_map", "eval_map_50", "eval_map_75", "eval_recall", "eval_iou_mean",
    "eval_center_error_px",
)
TEST_METRIC_KEYS = (
    "map", "map_50", "map_75", "recall", "iou_mean", "iou_std", "center_error_px",
    "center_error_px_std", "missed", "num_gt", "per_class_ap",
)


@dataclass
class Recorder:
    """An `EvaluationListener` that also notes what was on disk when each event arrived."""

    events: list[EvaluationEvent] = field(default_factory=list)
    checkpoint_on_disk: list[bool] = field(default_factory=list)

    def on_evaluation(self, event: EvaluationEvent) -> None:
        self.events.append(event)
        ckpt = event.best_checkpoint
        self.checkpoint_on_disk.append(
            ckpt is not None and (ckpt / "model.safetensors").is_file()
            and (ckpt / "config.json").is_file())


@dataclass
class Run:
    config_path: Path
    config: RunConfig
    result: RunResult
    recorder: Recorder


def run_from_yaml(folder: Path, raw: dict[str, Any], evaluate_test: bool = True) -> Run:
    """Write `raw` as a YAML file, load it like the CLI does and train it."""
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "run.yaml"
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_run_config(config_path)
    recorder = Recorder()
    result = train_run(config, folder / "output", listeners=[recorder],
                       evaluate_test=evaluate_test)
    return Run(config_path, config, result, recorder)


@pytest.fixture(scope="module")
def giou_run(tmp_path_factory: pytest.TempPathFactory,
             tiny_run_template: dict[str, Any]) -> Run:
    raw = copy.deepcopy(tiny_run_template)
    # A high learning rate tends to make eval_loss_bbox non-monotonic on this data, so the
    # best step is often not the last one; the tests hold either way.
    raw["training_args"].update(max_steps=8, logging_steps=2, learning_rate=1e-2)
    return run_from_yaml(tmp_path_factory.mktemp("giou"), raw)


def test_evaluation_event_at_every_logging_step(giou_run: Run) -> None:
    events = giou_run.recorder.events
    assert [e.step for e in events] == [2, 4, 6, 8]
    for event in events:
        assert event.max_steps == 8
        missing = [k for k in EVAL_KEYS if k not in event.metrics]
        assert not missing, missing
        for key in ("eval_loss", "eval_loss_bbox", "eval_loss_iou", "eval_loss_ce"):
            assert torch.isfinite(torch.tensor(event.metrics[key])), key
            assert event.metrics[key] >= 0
        assert 0.0 <= event.metrics["eval_map"] <= 1.0
        assert event.train_loss is not None and event.train_loss > 0
        assert event.learning_rate is not None
    assert [e.epoch for e in events] == sorted(e.epoch for e in events)
    history = giou_run.result.history
    assert [h["step"] for h in history] == [e.step for e in events]
    assert [h["eval_loss_bbox"] for h in history] == [e.metrics["eval_loss_bbox"] for e in events]


def test_new_best_events_have_their_checkpoint_on_disk(giou_run: Run) -> None:
    events, on_disk = giou_run.recorder.events, giou_run.recorder.checkpoint_on_disk
    assert events[0].is_new_best  # the first evaluation is always the best so far
    best_so_far = float("inf")
    for event, present in zip(events, on_disk, strict=True):
        value = event.metrics["eval_loss_bbox"]
        assert event.is_new_best == (value < best_so_far)
        best_so_far = min(best_so_far, value)
        assert event.best_metric == pytest.approx(best_so_far)
        if event.is_new_best:
            assert present, f"no checkpoint on disk when step {event.step} was announced"
            assert event.best_step == event.step
            assert event.best_checkpoint.name == f"checkpoint-{event.step}"
        else:
            assert event.best_step < event.step


def test_best_step_is_argmin_of_eval_loss_bbox(giou_run: Run) -> None:
    events, result = giou_run.recorder.events, giou_run.result
    best = min(events, key=lambda e: e.metrics["eval_loss_bbox"])
    assert result.metric_name == "eval_loss_bbox"
    assert result.best_step == best.step
    assert result.best_metric == pytest.approx(best.metrics["eval_loss_bbox"])
    assert events[-1].best_step == best.step
    saved = json.loads((result.best_model_dir / "best_step.json").read_text())
    assert saved == {"step": best.step, "metric": "eval_loss_bbox",
                     "value": pytest.approx(best.metrics["eval_loss_bbox"])}
    # only the best step's Trainer checkpoint is kept
    checkpoints = sorted(p.name for p in (result.output_dir / "checkpoints").iterdir())
    assert checkpoints == [f"checkpoint-{best.step}"]


def _val_batch(run: Run) -> dict[str, torch.Tensor]:
    from detr_core.data.dataset import CocoDetectionDataset, DetrCollator, build_augmentation
    from detr_core.data.prepare import prepare_data
    from detr_core.model.build import build_image_processor

    data = prepare_data(run.config.data, quiet=True)
    dataset = CocoDetectionDataset(data.val, data.label_map,
                                   build_augmentation([], 0.0, 0.0, "augmentation.val"))
    batch = DetrCollator(build_image_processor(run.config.model))([dataset[i] for i in range(4)])
    return {"pixel_values": batch["pixel_values"], "pixel_mask": batch["pixel_mask"]}


@torch.no_grad()
def _outputs(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    out = model.eval()(**batch)
    return out.logits, out.pred_boxes


def test_best_model_is_the_best_checkpoint(giou_run: Run) -> None:
    """`best_model/` reloads with from_pretrained and predicts exactly like the best step's
    checkpoint (loaded the same way), and unlike the untrained initial model."""
    from transformers import DetrForObjectDetection, set_seed

    from detr_core.data.coco import LabelMap
    from detr_core.model.build import build_model

    result = giou_run.result
    batch = _val_batch(giou_run)
    best = DetrForObjectDetection.from_pretrained(result.best_model_dir)
    checkpoint = result.output_dir / "checkpoints" / f"checkpoint-{result.best_step}"
    from_checkpoint = DetrForObjectDetection.from_pretrained(checkpoint)
    logits, boxes = _outputs(best, batch)
    ref_logits, ref_boxes = _outputs(from_checkpoint, batch)
    torch.testing.assert_close(logits, ref_logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(boxes, ref_boxes, atol=1e-6, rtol=0)
    assert best.config.id2label == {0: "rectangle", 1: "ellipse", 2: "triangle"}

    set_seed(giou_run.config.seed)  # the same initial weights the run started from
    label_map = LabelMap((1, 2, 3), ("rectangle", "ellipse", "triangle"))
    fresh = build_model(giou_run.config.model, label_map, "giou", False)
    fresh_logits, fresh_boxes = _outputs(fresh, batch)
    assert not torch.allclose(fresh_logits, logits, atol=1e-4)
    assert not torch.allclose(fresh_boxes, boxes, atol=1e-4)
    assert (result.best_model_dir / "preprocessor_config.json").is_file()


def test_tensorboard_scalars(giou_run: Run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = giou_run.result.output_dir / "tensorboard"
    assert any(p.name.startswith("events.out.tfevents") for p in folder.iterdir())
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    for tag in ("train/loss", "eval/loss_bbox", "eval/loss_iou", "eval/map", "eval/iou_mean"):
        assert tag in tags, sorted(tags)
    bbox = accumulator.Scalars("eval/loss_bbox")
    events = giou_run.recorder.events
    assert [s.step for s in bbox] == [e.step for e in events]
    for scalar, event in zip(bbox, events, strict=True):
        assert scalar.value == pytest.approx(event.metrics["eval_loss_bbox"], rel=1e-5)
    assert [s.step for s in accumulator.Scalars("train/loss")] == [2, 4, 6, 8]


def test_test_metrics_json_beside_best_model(giou_run: Run) -> None:
    from detr_core.data.synthetic import dataset_dir

    result = giou_run.result
    path = result.best_model_dir / "test_metrics.json"
    metrics = json.loads(path.read_text())
    missing = [k for k in TEST_METRIC_KEYS if k not in metrics]
    assert not missing, missing
    test_json = json.loads((dataset_dir(giou_run.config.data.synthetic) / "test.json").read_text())
    assert metrics["num_gt"] == len(test_json["annotations"])
    assert metrics["num_images"] == len(test_json["images"]) == 8
    assert 0 <= metrics["missed"] <= metrics["num_gt"]
    assert set(metrics["per_class_ap"]) <= {"rectangle", "ellipse", "triangle"}
    assert metrics["split"] == "test"
    assert result.test_metrics is not None
    assert result.test_metrics["map"] == metrics["map"]
    predictions = json.loads((result.best_model_dir / "test_predictions.json").read_text())
    image_ids = {image["id"] for image in test_json["images"]}
    queries = json.loads((result.best_model_dir / "config.json").read_text())["num_queries"]
    assert len(predictions) == 8 * queries  # every query of every test image
    for det in predictions:
        assert det["image_id"] in image_ids
        assert det["category_id"] in {1, 2, 3}
        assert len(det["bbox"]) == 4 and 0.0 <= det["score"] <= 1.0


def test_evaluate_cli(giou_run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m detr_core.evaluate` (its `main`, in-process) prints the table and writes
    test_metrics.json; the numbers are those the training run computed for the same model."""
    model_dir = tmp_path / "model"
    shutil.copytree(giou_run.result.best_model_dir, model_dir)
    (model_dir / "test_metrics.json").unlink()
    from detr_core.evaluate import main

    capsys.readouterr()
    assert main(["--model", str(model_dir), "--config", str(giou_run.config_path),
                 "--split", "test"]) == 0
    out = capsys.readouterr().out
    for row in ("test metrics of", "mAP@[.5:.95]", "mAP@.5", "IoU mean", "centre error px mean",
                "missed objects", "ground-truth objects"):
        assert row in out, out
    metrics = json.loads((model_dir / "test_metrics.json").read_text())
    trained = giou_run.result.test_metrics
    for key in ("map", "map_50", "map_75", "iou_mean", "missed", "num_gt"):
        assert metrics[key] == pytest.approx(trained[key], abs=1e-6), key
    assert f"{metrics['num_gt']}" in out


@pytest.mark.parametrize("variant", ["diou", "ciou"])
def test_diou_ciou_runs(tmp_path: Path, tiny_run_dict: dict[str, Any], variant: str) -> None:
    tiny_run_dict["iou_loss"] = variant
    tiny_run_dict["training_args"].update(max_steps=2, logging_steps=2)
    run = run_from_yaml(tmp_path, tiny_run_dict, evaluate_test=False)
    assert run.config.iou_loss == variant
    (event,) = run.recorder.events
    assert event.step == 2 and event.is_new_best and run.recorder.checkpoint_on_disk[0]
    loss_iou = event.metrics["eval_loss_iou"]
    assert 0.0 < loss_iou < 3.0
    assert run.result.best_step == 2
    assert (run.result.best_model_dir / "model.safetensors").is_file()
    assert not (run.result.best_model_dir / "test_metrics.json").exists()


def test_eval_history_jsonl_has_every_evaluation(giou_run: Run) -> None:
    from detr_core.training.events import read_eval_history

    path = giou_run.result.output_dir / "eval_history.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    events = giou_run.recorder.events
    assert [r["step"] for r in rows] == [e.step for e in events]
    for row, event in zip(rows, events, strict=True):
        for key in EVAL_KEYS:
            value = event.metrics[key]
            assert row[key] == (None if value != value else pytest.approx(value)), key
        assert row["train_loss"] == pytest.approx(event.train_loss)
    assert read_eval_history(giou_run.result.output_dir) == rows


def test_best_model_has_categories_and_a_detection_grid(giou_run: Run) -> None:
    from PIL import Image

    from detr_core.evaluation.visualize import PANEL_HEIGHT

    best = giou_run.result.best_model_dir
    assert json.loads((best / "categories.json").read_text()) == [
        {"id": 1, "name": "rectangle"}, {"id": 2, "name": "ellipse"},
        {"id": 3, "name": "triangle"}]
    with Image.open(best / "test_detections.png") as grid:
        # 8 square test images drawn PANEL_HEIGHT tall: 4 (truth | detections) pairs a row
        assert grid.width > 8 * PANEL_HEIGHT and grid.height > 2 * PANEL_HEIGHT


def test_predict_cli_writes_coco_detections_and_drawn_images(giou_run: Run,
                                                             tmp_path: Path) -> None:
    from PIL import Image
    from pycocotools.coco import COCO

    from detr_core import predict
    from detr_core.data.synthetic import dataset_dir

    source = dataset_dir(giou_run.config.data.synthetic) / "test"
    images = tmp_path / "photos"
    (images / "sub").mkdir(parents=True)
    shutil.copy(source / "000001.png", images / "a.png")
    Image.open(source / "000002.png").convert("RGB").save(images / "sub" / "b.jpg")
    Image.open(source / "000001.png").convert("RGB").save(images / "a.jpg")  # a.png's stem
    Image.open(source / "000003.png").resize((80, 50)).save(images / "c.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone photo: stored 80x50, shown turned, 50x80
    Image.open(source / "000004.png").convert("RGB").resize((80, 50)).save(
        images / "d.jpg", exif=exif.tobytes())
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "preds"
    code = predict.main(["--model", str(giou_run.result.best_model_dir), "--images",
                         str(images), "--out", str(out), "--threshold", "0.0"])
    assert code == 0
    coco = json.loads((out / "detections.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == [
        "a.jpg", "a.png", "c.png", "d.jpg", "sub/b.jpg"]
    assert [i["drawn"] for i in coco["images"]] == [
        "images/a.jpg.png", "images/a.png", "images/c.png", "images/d.jpg.png",
        "images/sub/b.jpg.png"]
    assert all((out / i["drawn"]).is_file() for i in coco["images"])  # none overwritten
    assert coco["images"][2]["width"] == 80 and coco["images"][2]["height"] == 50
    assert (coco["images"][3]["width"], coco["images"][3]["height"]) == (50, 80)  # as shown
    with Image.open(out / "images" / "d.jpg.png") as drawn:
        assert drawn.size == (50, 80)
    queries = json.loads((giou_run.result.best_model_dir / "config.json").read_text())[
        "num_queries"]
    assert len(coco["annotations"]) == 5 * queries  # threshold 0: every query
    index = COCO()
    index.dataset = coco
    index.createIndex()
    for ann in coco["annotations"]:
        assert ann["category_id"] in {1, 2, 3} and 0.0 <= ann["score"] <= 1.0
        assert ann["bbox"][2] >= 0 and ann["bbox"][3] >= 0
    with Image.open(out / "images" / "c.png") as drawn:
        assert drawn.size == (80, 50)


@pytest.mark.parametrize(
    ("case", "problem"),
    [("no_images", "no image files"), ("broken_image", "cannot decode image"),
     ("not_a_model", "not a save_pretrained model folder"),
     ("bad_threshold", "--threshold: must be within [0, 1]")])
def test_predict_bad_input_is_one_line_and_exit_2(
        giou_run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str,
        problem: str) -> None:
    from detr_core import predict

    images = tmp_path / "photos"
    images.mkdir()
    model = giou_run.result.best_model_dir
    if case == "broken_image":
        (images / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    elif case == "not_a_model":
        shutil.copy(giou_run.result.output_dir.parent / "run.yaml", images / "r.png")
        model = tmp_path
    extra = ["--threshold", "1.5"] if case == "bad_threshold" else []
    with pytest.raises(SystemExit) as info:
        predict.main(["--model", str(model), "--images", str(images), "--out",
                      str(tmp_path / "out"), *extra])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and problem in err, err
    assert not (tmp_path / "out").exists()


def test_test_split_at_every_evaluation_when_asked(tmp_path: Path,
                                                   tiny_run_dict: dict[str, Any]) -> None:
    """`evaluation.test_during_training`: test_* metrics beside eval_* at every evaluation,
    one event per evaluation all the same, and the best step still chosen on val."""
    from detr_core.training.events import read_eval_history

    tiny_run_dict["training_args"].update(max_steps=4, logging_steps=2)
    tiny_run_dict["evaluation"]["test_during_training"] = True
    run = run_from_yaml(tmp_path, tiny_run_dict, evaluate_test=False)
    assert [e.step for e in run.recorder.events] == [2, 4]
    rows = read_eval_history(run.result.output_dir)
    for row, event in zip(rows, run.recorder.events, strict=True):
        for key in ("test_loss_bbox", "test_map_50", "test_recall", "test_num_gt"):
            assert key in row and key in event.metrics, key
        assert row["test_num_gt"] > 0 and row["test_loss_bbox"] != row["eval_loss_bbox"]
    best = min(rows, key=lambda r: r["eval_loss_bbox"])
    assert run.result.best_step == best["step"]


def test_checkpoint_rotation_says_nothing_about_mtime(tmp_path: Path) -> None:
    """Two checkpoints saved within a second make the Trainer's rotation fall back from mtime
    to step order and log a warning (in CI it was a second stderr line after a one-line
    error); detr_core.train drops that notice, and the fallback itself still happens."""
    import logging
    import os

    from transformers.trainer_utils import sort_checkpoints

    for step in (10, 2):
        (tmp_path / f"checkpoint-{step}").mkdir()
        os.utime(tmp_path / f"checkpoint-{step}", (1e9, 1e9))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("transformers.trainer_utils")
    logger.addHandler(handler)
    logging.Logger.warning_once.cache_clear()  # type: ignore[attr-defined]  # emitted before?
    try:
        ordered = sort_checkpoints(str(tmp_path), use_mtime=True)
    finally:
        logger.removeHandler(handler)
    assert [Path(p).name for p in ordered] == ["checkpoint-2", "checkpoint-10"]
    assert not [r.getMessage() for r in records if "mtime" in r.getMessage()]


@pytest.mark.parametrize("optim", ["adamw_torch_fused", "schedule_free_adamw"])
def test_evaluations_do_not_change_the_training(tmp_path: Path, tiny_run_dict: dict[str, Any],
                                                optim: str) -> None:
    """The same seed trains the same weights however often (and on what) it evaluates.

    Every DataLoader iterator draws its base seed from the global torch generator, so without
    care each evaluation would shift the next epoch's data order and dropout: a learning-curve
    grid recorded with test evaluations, or a search evaluating every 125 steps instead of
    250, would train other models than the same seed evaluated less often. A schedule-free
    optimizer moves the weights to its average for each evaluation and back, which in floating
    point is not exact (`detr_core.training.trainer`). Two epochs of 4 steps, dropout
    on (as in facebook/detr-resnet-50): one evaluation at the end against val + test +
    averaged weights every 2 steps; the last evaluation's numbers must be the same bits.
    """
    from detr_core.training.events import read_eval_history

    tiny_run_dict["model"]["config_overrides"] = {"dropout": 0.1}
    tiny_run_dict["training_args"].update(optim=optim, learning_rate=3e-3)
    if optim.startswith("schedule_free"):
        tiny_run_dict["training_args"]["lr_scheduler_type"] = "constant"
    rarely = copy.deepcopy(tiny_run_dict)
    rarely["training_args"].update(max_steps=8, logging_steps=8)
    often = copy.deepcopy(tiny_run_dict)
    often["training_args"].update(max_steps=8, logging_steps=2)
    often["evaluation"]["test_during_training"] = True
    often["ema"] = {}
    last = {}
    for name, raw in (("rarely", rarely), ("often", often)):
        run = run_from_yaml(tmp_path / name, raw, evaluate_test=False)
        last[name] = read_eval_history(run.result.output_dir)[-1]
    assert last["rarely"]["step"] == last["often"]["step"] == 8
    for key in ("eval_loss", "eval_loss_bbox", "eval_loss_ce"):
        assert last["often"][key] == last["rarely"][key], key
