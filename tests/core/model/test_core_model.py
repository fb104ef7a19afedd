"""detr_core.model.build: the tiny preset, backbone freezing, loading a save_pretrained folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from detr_core.config.run_config import ModelConfig
from detr_core.data.coco import LabelMap
from detr_core.files.errors import UserInputError
from detr_core.model.build import (
    backbone_parameters,
    build_image_processor,
    build_model,
    load_trained_model,
)
from detr_core.model.families import TINY_DETR as TINY_PRESET
from detr_core.model.losses import DetrIouLoss

TWO = LabelMap(category_ids=(0, 1), names=("cat", "dog"))
THREE = LabelMap(category_ids=(1, 2, 3), names=("rectangle", "ellipse", "triangle"))


def tiny(image_size: int = 64, **overrides: object) -> ModelConfig:
    return ModelConfig(preset="tiny", image_size=image_size, config_overrides=dict(overrides))


def test_tiny_preset_builds_fast_offline() -> None:
    """Smoke check of "builds offline in well under a second" (generous bound: shared CPUs)."""
    build_model(tiny(), TWO, "giou", False)  # first build pays for lazy imports
    start = time.perf_counter()
    model = build_model(tiny(), TWO, "giou", False)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert model.config.d_model == 64
    assert model.config.auxiliary_loss is True
    assert model.config.num_queries == TINY_PRESET["num_queries"]
    assert isinstance(model.loss_function, DetrIouLoss)
    assert model.loss_function.iou_loss == "giou"
    # it runs: one forward pass on a 64 px batch
    with torch.no_grad():
        out = model(pixel_values=torch.rand(2, 3, 64, 64), pixel_mask=torch.ones(2, 64, 64))
    queries = TINY_PRESET["num_queries"]
    assert out.logits.shape == (2, queries, 3)
    assert out.pred_boxes.shape == (2, queries, 4)


def test_config_overrides_applied_and_bad_ones_rejected() -> None:
    model = build_model(tiny(num_queries=7, decoder_layers=1), TWO, "diou", False)
    assert model.config.num_queries == 7
    assert model.config.decoder_layers == 1
    assert model.loss_function.iou_loss == "diou"
    # DetrConfig is a strict dataclass: the coefficient is typed int, 1.5 must be a user error
    with pytest.raises(UserInputError, match=r"^model\.config_overrides: ") as info:
        build_model(tiny(bbox_loss_coefficient=1.5), TWO, "giou", False)
    assert "bbox_loss_coefficient" in str(info.value)
    assert "\n" not in str(info.value)


def test_overrides_that_build_but_cannot_run_are_refused_and_the_check_draws_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """d_model 65 builds (DetrConfig does not check it against the heads or the position
    embedding) and fails at the first step; the blank forward pass finds it up front."""
    with pytest.raises(UserInputError) as info:
        build_model(tiny(d_model=65), TWO, "giou", False)
    assert str(info.value).startswith("model.config_overrides: the model does not run with "
                                      "these overrides: ")
    assert "\n" not in str(info.value)
    # an override that runs: the check leaves the random numbers and the mode alone
    torch.manual_seed(3)
    model = build_model(tiny(num_queries=7), TWO, "giou", False)
    after_check = torch.rand(1).item()
    import detr_core.model.build as build

    monkeypatch.setattr(build, "check_model_runs", lambda model, size: None)
    torch.manual_seed(3)
    unchecked = build_model(tiny(num_queries=7), TWO, "giou", False)
    assert torch.rand(1).item() == after_check
    assert model.training == unchecked.training
    for mine, theirs in zip(model.parameters(), unchecked.parameters(), strict=True):
        assert torch.equal(mine, theirs)


def _frozen_names(model: torch.nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if not p.requires_grad}


def test_freeze_backbone_freezes_exactly_the_backbone() -> None:
    model = build_model(tiny(), TWO, "giou", freeze_backbone=True)
    backbone = {f"model.backbone.{name}" for name, _ in model.model.backbone.named_parameters()}
    assert backbone  # the check below is not vacuous
    assert _frozen_names(model) == backbone
    frozen_ids = {id(p) for p in model.parameters() if not p.requires_grad}
    assert frozen_ids == {id(p) for p in backbone_parameters(model)}
    assert len(frozen_ids) == len(list(model.model.backbone.parameters()))
    # the transformer and heads stay trainable
    assert all(p.requires_grad for p in model.class_labels_classifier.parameters())
    assert all(p.requires_grad for p in model.model.encoder.parameters())


def test_unfrozen_backbone_has_no_frozen_parameter() -> None:
    """transformers freezes an HF ResNet backbone at construction; `false` must undo that."""
    model = build_model(tiny(), TWO, "giou", freeze_backbone=False)
    assert _frozen_names(model) == set()


def test_image_processor_square_canvas() -> None:
    processor = build_image_processor(tiny(image_size=80))
    assert processor.size == {"shortest_edge": 80, "longest_edge": 80}
    assert processor.pad_size == {"height": 80, "width": 80}
    assert processor.do_pad is True


def test_from_pretrained_folder_gets_new_head(tmp_path: Path) -> None:
    """A save_pretrained folder with 3 classes, fine-tuned on 2: new 2+1-way head, new labels."""
    source = build_model(tiny(image_size=72), THREE, "giou", False)
    folder = tmp_path / "pretrained"
    source.save_pretrained(folder)
    build_image_processor(tiny(image_size=72)).save_pretrained(folder)
    assert (folder / "preprocessor_config.json").is_file()

    cfg = ModelConfig(checkpoint=str(folder), image_size=64)
    model = build_model(cfg, TWO, "ciou", freeze_backbone=False)
    assert model.class_labels_classifier.out_features == 2 + 1
    assert model.config.num_labels == 2
    assert model.config.id2label == {0: "cat", 1: "dog"}
    assert model.config.label2id == {"cat": 0, "dog": 1}
    assert model.loss_function.iou_loss == "ciou"
    assert _frozen_names(model) == set()
    # everything but the classification head is the saved model's
    saved = source.state_dict()
    for name, value in model.state_dict().items():
        if name.startswith("class_labels_classifier"):
            continue
        torch.testing.assert_close(value, saved[name], msg=name)
    # the processor comes from the folder, resized to this run's image_size
    processor = build_image_processor(cfg)
    assert processor.pad_size == {"height": 64, "width": 64}

    bad = ModelConfig(checkpoint=str(folder), config_overrides={"giou_loss_coefficient": 2.5})
    with pytest.raises(UserInputError, match=r"^model\.config_overrides: .*giou_loss_coeff"):
        build_model(bad, TWO, "giou", False)

    frozen = build_model(cfg, TWO, "giou", freeze_backbone=True)
    assert _frozen_names(frozen) == {
        f"model.backbone.{n}" for n, _ in frozen.model.backbone.named_parameters()}


def test_load_trained_model_keeps_weights(tmp_path: Path) -> None:
    model = build_model(tiny(), THREE, "giou", False)
    model.save_pretrained(tmp_path / "m")
    loaded = load_trained_model(tmp_path / "m", "diou")
    assert loaded.loss_function.iou_loss == "diou"
    assert loaded.config.id2label == THREE.id2label
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, model.state_dict()[name], msg=name)


def test_a_saved_model_records_its_iou_loss_and_reloads_with_it(tmp_path: Path) -> None:
    build_model(tiny(), THREE, "ciou", False).save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["iou_loss"] == "ciou"
    loaded = load_trained_model(tmp_path / "m")
    assert loaded.loss_function.iou_loss == "ciou"
    assert load_trained_model(tmp_path / "m", "giou").loss_function.iou_loss == "giou"


def test_a_folder_without_a_recorded_iou_loss_is_refused_not_guessed(tmp_path: Path) -> None:
    """Folders written before runs recorded their loss: no silent GIoU."""
    model = build_model(tiny(), THREE, "diou", False)
    del model.config.iou_loss
    model.save_pretrained(tmp_path / "old")
    with pytest.raises(UserInputError, match=r"old: records no iou_loss .*--config"):
        load_trained_model(tmp_path / "old")
    assert load_trained_model(tmp_path / "old", "diou").loss_function.iou_loss == "diou"
    assert load_trained_model(tmp_path / "old", with_loss=False).config.id2label == \
        THREE.id2label


def test_missing_checkpoint_folder_is_user_error(tmp_path: Path) -> None:
    cfg = ModelConfig(checkpoint=str(tmp_path / "nowhere"))
    with pytest.raises(UserInputError, match=r"^model\.checkpoint: .*nowhere': no config\.json"):
        build_model(cfg, TWO, "giou", False)
