"""Every supported DETR-family member through the command-line tools, as a user runs them:
train (best model exported), evaluate the exported folder on the test split, predict on a
folder of images, each with the family's own image processor, loss and scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from detr_core import evaluate, predict, train
from detr_core.model.families import FAMILIES

pytestmark = pytest.mark.slow


def write_run(path: Path, family: str, iou_loss: str) -> Path:
    run = {"seed": 3, "num_threads": 2, "iou_loss": iou_loss,
           "data": {"synthetic": {"num_train": 16, "num_val": 8, "num_test": 8,
                                  "image_size": 64}},
           "model": {"preset": "tiny", "family": family, "image_size": 64},
           "backbone_lr_ratio": 0.5,
           "training_args": {"max_steps": 4, "logging_steps": 2, "learning_rate": 1e-3,
                             "per_device_train_batch_size": 4}}
    path.write_text(yaml.safe_dump(run))
    return path


@pytest.mark.parametrize(("family", "iou_loss"), [
    ("detr", "giou"), ("conditional_detr", "diou"), ("deformable_detr", "ciou"),
    ("rt_detr", "diou"), ("rt_detr_v2", "giou"), ("d_fine", "ciou")])
def test_train_evaluate_predict(tmp_path: Path, family: str, iou_loss: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    config = write_run(tmp_path / "run.yaml", family, iou_loss)
    assert train.main(["--config", str(config), "--output-dir", str(tmp_path / "out")]) == 0
    best = tmp_path / "out" / "best_model"
    saved = json.loads((best / "config.json").read_text())
    assert saved["model_type"] == family
    processor = json.loads((best / "preprocessor_config.json").read_text())
    assert processor["image_processor_type"].startswith(FAMILIES[family].processor_class)
    history = [json.loads(line) for line in
               (tmp_path / "out" / "eval_history.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history] == [2, 4]
    for name in ("eval_loss_bbox", "eval_loss_iou", "eval_loss_ce", "eval_cardinality_error",
                 "eval_map_50", "eval_recall"):
        assert name in history[-1], name
    assert json.loads((best / "test_metrics.json").read_text())["num_gt"] > 0

    capsys.readouterr()
    assert evaluate.main(["--model", str(best), "--config", str(config),
                          "--split", "val", "--thresholds", "0.3,0.5,0.7"]) == 0
    out = capsys.readouterr().out
    assert "val metrics of" in out and "score threshold   recall  precision" in out
    sweep = json.loads((best / "val_metrics.json").read_text())["threshold_sweep"]
    assert [row["score_threshold"] for row in sweep] == [0.3, 0.5, 0.7]
    assert sweep[0]["detections"] >= sweep[1]["detections"] >= sweep[2]["detections"]

    images = tmp_path / "photos"
    images.mkdir()
    from detr_core.config.run_config import load_run_config
    from detr_core.data.prepare import prepare_data

    data = prepare_data(load_run_config(config).data, quiet=True)
    for record in list(data.test.coco.imgs.values())[:3]:
        source = data.test.images_dir / record["file_name"]
        (images / source.name).write_bytes(source.read_bytes())
    assert predict.main(["--model", str(best), "--images", str(images),
                         "--out", str(tmp_path / "preds")]) == 0
    found = json.loads((tmp_path / "preds" / "detections.json").read_text())
    assert len(found["images"]) == 3
    assert all(0.0 <= a["score"] <= 1.0 for a in found["annotations"])
