"""The shipped checkpoint and the command that makes it.

- `builtin:tiny-shapes` is what the embedded default fine-tunes: it resolves from any working
  directory, offline, holds exactly the three `save_pretrained` files (at most 5 MB), was
  pretrained on classes disjoint from the default's, and builds a model whose new
  classification head is fresh while every other weight comes from the checkpoint.
- `python -m detr_core.pretrain` runs end to end on a tiny config and writes a folder that
  `python -m detr_core.train` loads by `model.checkpoint`.
- A checkpoint trained on other classes of the *same* count still gets a fresh head.
- A non-editable install (a built wheel) carries the checkpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from detr_core.config.run_config import ModelConfig, load_default_run_config, run_config_from_dict
from detr_core.data.coco import LabelMap
from detr_core.files.builtin_models import CHECKPOINT_FILES, builtin_names, resolve_checkpoint
from detr_core.files.errors import UserInputError
from detr_core.model.build import build_model

REPO_ROOT = Path(__file__).resolve().parents[3]
SHAPES = LabelMap((1, 2, 3), ("rectangle", "ellipse", "triangle"))


def _state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _head_keys(state: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in state if k.startswith("class_labels_classifier.")}


def test_default_run_fine_tunes_the_shipped_checkpoint() -> None:
    config = load_default_run_config()
    assert config.model.checkpoint == "builtin:tiny-shapes"
    assert config.model.preset is None
    assert config.data.synthetic is not None and config.data.synthetic.task == "shapes"
    assert "tiny-shapes" in builtin_names()


def test_shipped_checkpoint_resolves_offline_from_another_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = Path(resolve_checkpoint("builtin:tiny-shapes"))
    assert folder.is_absolute() and folder.is_dir()
    files = {p.name for p in folder.iterdir()}
    assert set(CHECKPOINT_FILES) <= files
    assert sum((folder / n).stat().st_size for n in CHECKPOINT_FILES) <= 5 * 1024 * 1024
    pretrained = json.loads((folder / "config.json").read_text())
    assert set(pretrained["id2label"].values()) == {"star", "cross", "ring", "pentagon"}
    assert not set(pretrained["id2label"].values()) & set(SHAPES.names)  # disjoint classes

    model = build_model(ModelConfig(checkpoint="builtin:tiny-shapes"), SHAPES, "giou", False)
    assert model.config.id2label == {0: "rectangle", 1: "ellipse", 2: "triangle"}
    from transformers import DetrForObjectDetection

    source = _state(DetrForObjectDetection.from_pretrained(folder))
    loaded = _state(model)
    for key, value in loaded.items():
        if key in _head_keys(loaded):
            continue
        torch.testing.assert_close(value, source[key], msg=key)  # fine-tuned from these
    assert loaded["class_labels_classifier.weight"].shape[0] == 4  # 3 classes + no-object
    assert all(p.requires_grad for p in model.model.backbone.parameters())


def test_unknown_builtin_is_a_user_error() -> None:
    with pytest.raises(UserInputError) as info:
        run_config_from_dict({"model": {"checkpoint": "builtin:nope"},
                              "data": {"synthetic": {}}}, source="run.yaml")
    assert str(info.value).startswith("run.yaml: model.checkpoint: 'builtin:nope' is not a "
                                      "built-in checkpoint (known: builtin:tiny-shapes")


def test_same_number_of_other_classes_gets_a_fresh_head(tmp_path: Path) -> None:
    """`ignore_mismatched_sizes` alone would keep a 3-class head trained on other classes."""
    torch.manual_seed(0)
    other = LabelMap((1, 2, 3), ("apple", "pear", "plum"))
    saved = build_model(ModelConfig(preset="tiny"), other, "giou", False)
    with torch.no_grad():
        saved.class_labels_classifier.weight.fill_(0.5)
    saved.save_pretrained(tmp_path / "ckpt")
    fresh = build_model(ModelConfig(checkpoint=str(tmp_path / "ckpt")), SHAPES, "giou", False)
    kept = build_model(ModelConfig(checkpoint=str(tmp_path / "ckpt")), other, "giou", False)
    assert not torch.allclose(fresh.class_labels_classifier.weight, torch.tensor(0.5))
    assert torch.allclose(kept.class_labels_classifier.weight, torch.tensor(0.5))
    torch.testing.assert_close(fresh.bbox_predictor.layers[0].weight,
                               saved.bbox_predictor.layers[0].weight)


def _tiny_pretrain_yaml(path: Path, family: str = "detr") -> Path:
    raw = yaml.safe_load((REPO_ROOT / "detr_core/defaults/pretrain.yaml").read_text())
    raw["model"]["family"] = family
    raw["data"]["synthetic"].update(num_train=16, num_val=8, num_test=8, image_size=64)
    raw["model"]["image_size"] = 64
    raw["num_threads"] = 2
    raw["training_args"].update(max_steps=4, logging_steps=2, warmup_steps=0,
                                per_device_eval_batch_size=8)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("family", ["detr", "d_fine"])
def test_pretrain_command_writes_a_checkpoint_train_loads(tmp_path: Path, family: str) -> None:
    from detr_core import pretrain, train

    out = tmp_path / "ckpt"
    report = tmp_path / "made.md"
    assert pretrain.main(["--config", str(_tiny_pretrain_yaml(tmp_path / "pt.yaml", family)),
                          "--output-dir", str(out), "--work-dir", str(tmp_path / "work"),
                          "--report", str(report)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*CHECKPOINT_FILES, pretrain.PROVENANCE_FILE])
    made = json.loads((out / pretrain.PROVENANCE_FILE).read_text())
    assert made["max_steps"] == 4 and made["best_step"] in (2, 4)
    assert made["run_config"]["data"]["synthetic"]["task"] == "pretrain"
    assert {"map_50", "recall"} <= set(made["test_metrics"])
    assert [h["step"] for h in made["eval_history"]] == [2, 4]
    text = report.read_text()
    assert "stars, crosses, rings, pentagons" in text and "| map_50 |" in text

    run = {"seed": 1, "num_threads": 2,
           "data": {"synthetic": {"num_train": 16, "num_val": 8, "num_test": 0,
                                  "image_size": 64}},
           "model": {"checkpoint": str(out), "image_size": 64},
           "training_args": {"max_steps": 2, "logging_steps": 2}}
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(run))
    assert train.main(["--config", str(tmp_path / "ft.yaml"),
                       "--output-dir", str(tmp_path / "ft")]) == 0
    tuned = json.loads((tmp_path / "ft" / "best_model" / "config.json").read_text())
    assert set(tuned["id2label"].values()) == set(SHAPES.names)
    assert tuned["model_type"] == made["run_config"]["model"]["family"] == family


@pytest.mark.slow
def test_a_built_wheel_carries_the_shipped_checkpoint(tmp_path: Path) -> None:
    """What a non-editable `pip install` gets: the package data is in the wheel."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("detr_search-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in CHECKPOINT_FILES:
        assert f"detr_core/builtin/tiny-shapes/{name}" in names
    assert "detr_core/defaults/run.yaml" in names


def test_loading_reports_the_new_head_and_unexpected_gaps_in_one_line_each(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The head is new on purpose (one line); so are the query embeddings of a new query
    count (one line naming them)."""
    saved = build_model(ModelConfig(preset="tiny"), LabelMap((1, 2), ("apple", "pear")),
                        "giou", False)
    saved.save_pretrained(tmp_path / "ckpt")
    capsys.readouterr()
    build_model(ModelConfig(checkpoint=str(tmp_path / "ckpt"),
                            config_overrides={"num_queries": 12}), SHAPES, "giou", False)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].endswith("new classification head for rectangle, ellipse, triangle (the "
                           "checkpoint's was for apple, pear)")
    assert len(err) == 2 and "num_queries 10 -> 12 (model.config_overrides)" in err[1]
    assert "query_position_embeddings" in err[1] and "start afresh" in err[1]
    assert not any("LOAD REPORT" in line for line in err)
