"""Every supported DETR-family member through detr_core.model: the tiny presets, the family read
from a checkpoint, label-shaped parameters re-initialised (and nothing else), each family's image
processor and post-processing (against transformers' own), backbone freezing."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
import torch
from torchvision.ops import FrozenBatchNorm2d

from detr_core.config.run_config import FamilyName, ModelConfig, run_config_from_dict
from detr_core.data.coco import LabelMap
from detr_core.evaluation.metrics import decode_predictions
from detr_core.files.errors import UserInputError
from detr_core.model.build import (
    backbone_parameters,
    build_image_processor,
    build_model,
    label_shaped_parameters,
    load_image_processor,
    load_trained_model,
    model_family,
)
from detr_core.model.families import FAMILIES, family_of_model
from detr_core.model.model_check import check_model_folder

ALL = tuple(FAMILIES)
#: One softmax and one sigmoid family in `make test-fast`; every family in `make test`.
EACH = [pytest.param(f, marks=[] if f in ("detr", "rt_detr") else [pytest.mark.slow])
        for f in ALL]
THREE = LabelMap(category_ids=(1, 2, 3), names=("rectangle", "ellipse", "triangle"))
OTHER_THREE = LabelMap(category_ids=(1, 2, 3), names=("star", "cross", "ring"))
TWO = LabelMap(category_ids=(0, 1), names=("cat", "dog"))
#: Parameters a family never trains (D-FINE's `reg_scale` and `up`).
FIXED = {"model.decoder.reg_scale", "model.decoder.up"}


def tiny(family: str, image_size: int = 64, **overrides: object) -> ModelConfig:
    return ModelConfig(preset="tiny", family=family, image_size=image_size,
                       config_overrides=dict(overrides))


def saved_checkpoint(folder: Path, family: str, labels: LabelMap = THREE) -> torch.nn.Module:
    """A tiny model of `family` saved as a user's save_pretrained folder (with processor),
    every weight moved off its initial value (as training would)."""
    model = build_model(tiny(family), labels, "giou", False)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.rand_like(parameter) + 0.5)
    model.save_pretrained(folder)
    build_image_processor(tiny(family)).save_pretrained(folder)
    return model


def test_config_layer_lists_the_same_families() -> None:
    assert set(typing.get_args(FamilyName)) == set(FAMILIES)


@pytest.mark.parametrize("family", EACH)
def test_tiny_preset_of_each_family_builds_and_runs(family: str) -> None:
    model = build_model(tiny(family), TWO, "diou", False)
    assert model.config.model_type == family
    assert family_of_model(model) is FAMILIES[family]
    assert model.loss_function.iou_loss == "diou"
    assert all(p.requires_grad for p in backbone_parameters(model))
    # fixed by design, not by the run: D-FINE's distribution constants
    assert {n for n, p in model.named_parameters() if not p.requires_grad} <= FIXED
    assert sum(p.numel() for p in model.parameters()) < 1_500_000
    model.eval()
    with torch.no_grad():
        out = model(pixel_values=torch.rand(2, 3, 64, 64),
                    pixel_mask=torch.ones(2, 64, 64, dtype=torch.long))
    classes = 2 + (1 if FAMILIES[family].scoring == "softmax" else 0)
    assert out.logits.shape == (2, model.config.num_queries, classes)
    assert out.pred_boxes.shape == (2, model.config.num_queries, 4)


@pytest.mark.parametrize("family", EACH)
def test_checkpoint_family_is_read_and_only_label_shaped_tensors_start_afresh(
        tmp_path: Path, family: str) -> None:
    """Same number of classes, other names: every label-shaped tensor (the classifier, and for
    RT-DETR / D-FINE every decoder layer's class_embed, enc_score_head and the denoising
    class embedding) is re-initialised; every other tensor is the checkpoint's."""
    source = saved_checkpoint(tmp_path / "ckpt", family)
    config = ModelConfig(checkpoint=str(tmp_path / "ckpt"), image_size=64)
    assert model_family(config) is FAMILIES[family]
    model = build_model(config, OTHER_THREE, "ciou", False)
    assert type(model) is type(source)
    assert model.loss_function.iou_loss == "ciou"
    shaped = label_shaped_parameters(model)
    assert shaped
    if family in ("rt_detr", "rt_detr_v2", "d_fine"):
        assert {"model.enc_score_head.weight", "model.denoising_class_embed.weight"} <= shaped
    saved = source.state_dict()
    for name, value in model.state_dict().items():
        if name in shaped:
            assert not torch.equal(value, saved[name]), name
        else:
            assert torch.equal(value, saved[name]), name
    # the same classes: nothing is re-initialised
    same = build_model(config, THREE, "giou", False)
    for name, value in same.state_dict().items():
        assert torch.equal(value, saved[name]), name


@pytest.mark.parametrize("family", ["detr", "rt_detr"])
def test_other_label_count_gets_heads_of_that_size(tmp_path: Path, family: str) -> None:
    saved_checkpoint(tmp_path / "ckpt", family)
    model = build_model(ModelConfig(checkpoint=str(tmp_path / "ckpt")), TWO, "giou", False)
    assert model.config.num_labels == 2
    assert model.config.id2label == {0: "cat", 1: "dog"}
    model.eval()
    with torch.no_grad():
        out = model(pixel_values=torch.rand(1, 3, 64, 64))
    assert out.logits.shape[-1] == (3 if family == "detr" else 2)


def test_unsupported_model_type_is_refused_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "yolos"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "yolos"}))
    with pytest.raises(UserInputError, match="'yolos' model, not a supported DETR-family"):
        check_model_folder(folder, key="model.checkpoint")
    with pytest.raises(UserInputError, match=r"^model\.checkpoint: model_type 'yolos' is not"):
        model_family(ModelConfig(checkpoint=str(folder)))


def test_family_only_with_a_preset() -> None:
    base = {"data": {"synthetic": {}}}
    config = run_config_from_dict({**base, "model": {"preset": "tiny", "family": "d_fine"}})
    assert config.model.family == "d_fine"
    with pytest.raises(UserInputError, match=r"model\.family: only with `preset: tiny`"):
        run_config_from_dict({**base, "model": {"checkpoint": "x", "family": "d_fine"}})
    with pytest.raises(UserInputError,
                       match=r"model\.family: must be one of 'detr', .* got str 'yolos'"):
        run_config_from_dict({**base, "model": {"preset": "tiny", "family": "yolos"}})


@pytest.mark.parametrize("family", ALL)
def test_override_keys_are_checked_against_the_family_config(family: str) -> None:
    with pytest.raises(UserInputError, match=r"model\.config_overrides\.no_such_field: not a"):
        build_model(tiny(family, no_such_field=1), TWO, "giou", False)


@pytest.mark.parametrize("family", ALL)
def test_each_family_gets_its_own_image_processor(tmp_path: Path, family: str) -> None:
    processor = build_image_processor(tiny(family, image_size=80))
    assert type(processor).__name__ == FAMILIES[family].processor_class
    if FAMILIES[family].loss_family in ("rt_detr", "d_fine"):
        assert processor.size == {"height": 80, "width": 80}  # stretched, as trained upstream
    else:
        assert processor.size == {"shortest_edge": 80, "longest_edge": 80}
        assert processor.pad_size == {"height": 80, "width": 80}
    processor.save_pretrained(tmp_path)
    assert type(load_image_processor(tmp_path)) is type(processor)


@pytest.mark.parametrize("family", EACH)
def test_detections_equal_transformers_post_processing(family: str) -> None:
    """Scores, labels and pixel boxes as the family's `post_process_object_detection` gives
    them (softmax per query for DETR, sigmoid top-k over (query, class) pairs otherwise)."""
    model = build_model(tiny(family), THREE, "giou", False).eval()
    processor = build_image_processor(tiny(family))
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(pixel_values=torch.rand(2, 3, 64, 64))
    sizes = [(48, 64), (64, 40)]
    labels = [{"image_id": torch.tensor([i]), "size": torch.tensor([h, w]),
               "resized_size": torch.tensor([h, w]), "orig_size": torch.tensor([h, w])}
              for i, (h, w) in enumerate(sizes)]
    ours = decode_predictions(out.logits, out.pred_boxes, labels, FAMILIES[family])
    theirs = processor.post_process_object_detection(out, threshold=-1.0, target_sizes=sizes)
    for mine, upstream in zip(ours, theirs, strict=True):
        order = torch.argsort(mine.scores, descending=True, stable=True)
        expected = torch.argsort(upstream["scores"], descending=True, stable=True)
        torch.testing.assert_close(mine.scores[order], upstream["scores"][expected])
        assert torch.equal(mine.labels[order], upstream["labels"][expected])
        torch.testing.assert_close(mine.boxes[order], upstream["boxes"][expected])


@pytest.mark.parametrize("family", EACH)
def test_freeze_backbone_freezes_exactly_the_backbone_and_its_batch_norms(family: str) -> None:
    model = build_model(tiny(family), TWO, "giou", freeze_backbone=True)
    frozen = {id(p) for n, p in model.named_parameters() if not p.requires_grad
              and n not in FIXED}
    assert frozen == {id(p) for p in backbone_parameters(model)}
    backbone = model.model.backbone
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    model.train()
    model(pixel_values=torch.rand(2, 3, 64, 64))
    for name, value in backbone.state_dict().items():  # running statistics did not move
        assert torch.equal(value, before[name]), name
    if family in ("rt_detr", "rt_detr_v2", "d_fine"):  # live batch norms in the tiny preset
        assert any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())
        live = build_model(tiny(family), TWO, "giou", freeze_backbone=False)
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in live.model.backbone.modules())


@pytest.mark.slow
@pytest.mark.parametrize("family", ["deformable_detr", "d_fine"])
def test_trained_model_folder_reloads_with_its_family(tmp_path: Path, family: str) -> None:
    model = saved_checkpoint(tmp_path / "m", family)
    loaded = load_trained_model(tmp_path / "m", "diou")
    assert type(loaded) is type(model)
    assert loaded.loss_function.iou_loss == "diou"
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


@pytest.mark.parametrize("family", ["conditional_detr", "d_fine"])
def test_num_queries_is_known_before_building(tmp_path: Path, family: str) -> None:
    """What the "more objects than queries" warning reads, for presets and folders alike."""
    from detr_core.model.build import num_queries_of
    from detr_core.model.families import tiny_preset

    assert num_queries_of(tiny(family)) == tiny_preset(family)["num_queries"]
    assert num_queries_of(tiny(family, num_queries=12)) == 12
    saved_checkpoint(tmp_path / "m", family)
    assert num_queries_of(ModelConfig(checkpoint=str(tmp_path / "m"))) == \
        tiny_preset(family)["num_queries"]
