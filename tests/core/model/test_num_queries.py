"""`model.config_overrides: {num_queries: N}` on a checkpoint: a data set with more objects an
image than the checkpoint has queries (BCCD: up to 30; builtin:tiny-shapes has 10).

The query-shaped tensors (DETR's and Deformable DETR's `query_position_embeddings`; none for
D-FINE, whose queries are the encoder's top-N proposals) start afresh as in a new model of the
family (DETR's at N(0, 1), as its preset's, not transformers' N(0, init_std)), every other
tensor is the checkpoint's, one line says so, and the model trains with more objects than
D-FINE's denoising budget. Checkpoints are tiny models saved with `save_pretrained`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detr_core.config.run_config import ModelConfig
from detr_core.data.coco import LabelMap
from detr_core.files.errors import UserInputError
from detr_core.model.build import build_model, parameters_shaped_by

THREE = LabelMap(category_ids=(1, 2, 3), names=("RBC", "WBC", "Platelets"))
QUERY_SHAPED = {"detr": {"model.query_position_embeddings.weight"},
                "deformable_detr": {"model.query_position_embeddings.weight"},
                "d_fine": set()}


def saved_checkpoint(folder: Path, family: str) -> dict[str, torch.Tensor]:
    """A tiny model of `family` for THREE's classes, every weight moved off its initial value,
    saved with save_pretrained; its state dict."""
    model = build_model(ModelConfig(preset="tiny", family=family), THREE, "giou", False)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    model.save_pretrained(folder)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("family", sorted(QUERY_SHAPED))
def test_more_queries_reinitialise_only_the_query_embeddings_and_say_so(
        tmp_path: Path, family: str, capsys: pytest.CaptureFixture[str]) -> None:
    saved = saved_checkpoint(tmp_path / "ckpt", family)
    before = saved.get("model.query_position_embeddings.weight")
    config = ModelConfig(checkpoint=str(tmp_path / "ckpt"), image_size=96,
                         config_overrides={"num_queries": 45})
    model = build_model(config, THREE, "giou", False)
    err = capsys.readouterr().err
    old = 10 if family == "detr" else 30
    assert f"num_queries {old} -> 45 (model.config_overrides)" in err
    assert "warning:" not in err  # said once, as what it is
    assert model.config.num_queries == 45
    shaped = parameters_shaped_by(model, "num_queries")
    assert shaped == QUERY_SHAPED[family]
    if shaped:
        assert "start afresh as in a new" in err
    else:
        assert "no weight depends on it" in err
    for name, value in model.state_dict().items():
        if name in shaped:
            assert value.shape[0] == 45 and value.shape[0] != before.shape[0], name
        else:
            assert torch.equal(value, saved[name]), name
    if family == "detr":  # the preset's N(0, 1), not transformers' N(0, init_std = 0.125)
        assert 0.8 < float(model.model.query_position_embeddings.weight.std()) < 1.2

    # trains with 40 objects an image: more than the old query count and than D-FINE's
    # denoising budget (num_denoising 30: one denoising group)
    model.train()
    boxes = torch.rand(40, 4) * 0.3 + 0.2
    labels = [{"class_labels": torch.randint(0, 3, (40,)), "boxes": boxes}]
    pixels = {"pixel_values": torch.rand(1, 3, 96, 96),
              "pixel_mask": torch.ones(1, 96, 96, dtype=torch.long)}
    assert torch.isfinite(model(**pixels, labels=labels).loss)
    model.eval()
    with torch.no_grad():
        assert model(**pixels).logits.shape[1] == 45


def test_same_query_count_changes_nothing_and_says_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = saved_checkpoint(tmp_path / "ckpt", "detr")
    config = ModelConfig(checkpoint=str(tmp_path / "ckpt"), config_overrides={"num_queries": 10})
    model = build_model(config, THREE, "giou", False)
    assert "num_queries" not in capsys.readouterr().err
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[name]), name


def test_query_count_is_checked_at_the_runs_image_size() -> None:
    """D-FINE selects `num_queries` of its encoder's positions: 336 at 128 px, 84 at 64 px. The
    check runs at the run's size, so 100 queries pass at 128 px and are refused at 64 px
    (checked at a fixed 64 px, they were refused at any size)."""
    def config(size: int) -> ModelConfig:
        return ModelConfig(preset="tiny", family="d_fine", image_size=size,
                           config_overrides={"num_queries": 100})

    assert build_model(config(128), THREE, "giou", False).config.num_queries == 100
    with pytest.raises(UserInputError, match="does not run with these overrides"):
        build_model(config(64), THREE, "giou", False)
