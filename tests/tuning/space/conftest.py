"""Fixtures of the search-space tests: a tiny checkpoint of another family than the shipped one."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def rt_detr_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny RT-DETR `save_pretrained` folder (no recipe.json: RT-DETR's published recipe)."""
    from detr_core.config import ModelConfig
    from detr_core.data.coco import LabelMap
    from detr_core.model import build_image_processor, build_model

    folder = tmp_path_factory.mktemp("rt_detr")
    cfg = ModelConfig(preset="tiny", family="rt_detr")
    model = build_model(cfg, LabelMap(category_ids=(0, 1), names=("a", "b")), "giou", False)
    model.save_pretrained(folder)
    build_image_processor(cfg).save_pretrained(folder)
    return folder
