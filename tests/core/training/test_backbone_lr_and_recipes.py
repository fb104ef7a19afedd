"""The backbone learning rate (its own optimizer groups, with every optimizer the run config
allows, with EMA) and the recipes that fill what a run leaves unset."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from detr_core.config.run_config import ModelConfig, run_config_from_dict
from detr_core.config.training_args import build_training_args
from detr_core.data.coco import LabelMap
from detr_core.data.dataset import DetrCollator
from detr_core.data.prepare import prepare_data
from detr_core.files.errors import UserInputError
from detr_core.model.build import backbone_parameters, build_image_processor, build_model
from detr_core.model.families import FAMILIES
from detr_core.model.recipes import PUBLISHED, apply_recipe, recipe_for
from detr_core.train import build_datasets, train_run
from detr_core.training.trainer import DetrTrainer, make_compute_metrics

THREE = LabelMap(category_ids=(1, 2, 3), names=("rectangle", "ellipse", "triangle"))


class GroupRates(TrainerCallback):
    """Each optimizer group's parameters and learning rate after every step."""

    def __init__(self) -> None:
        self.groups: list[tuple[set[int], float, float]] = []

    def on_step_end(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                    **kw: Any) -> None:
        self.groups = [({id(p) for p in g["params"]}, g.get("scheduled_lr", g["lr"]),
                        g["weight_decay"]) for g in optimizer.param_groups]


@pytest.mark.parametrize("optim", ["adamw_torch_fused", "schedule_free_adamw"])
def test_backbone_trains_at_its_ratio_of_the_learning_rate(tiny_run_dict: dict[str, Any],
                                                           optim: str) -> None:
    tiny_run_dict["training_args"].update(optim=optim, max_steps=2, logging_steps=10,
                                          lr_scheduler_type="constant", weight_decay=0.01)
    # RT-DETR's tiny backbone has live batch norms: parameters of both decay groups
    tiny_run_dict.update(backbone_lr_ratio=0.1)
    tiny_run_dict["model"]["family"] = "rt_detr"
    config = run_config_from_dict(tiny_run_dict)
    data = prepare_data(config.data, validate=False, quiet=True)
    datasets = build_datasets(config, data)
    model = build_model(config.model, data.label_map, config.iou_loss, config.freeze_backbone)
    seen = GroupRates()
    with tempfile.TemporaryDirectory() as out:
        args = build_training_args(config.training_args, out, config.seed)
        trainer = DetrTrainer(model=model, args=args, train_dataset=datasets["train"],
                              eval_dataset=datasets["val"], callbacks=[seen],
                              backbone_lr_ratio=config.backbone_lr_ratio,
                              compute_metrics=make_compute_metrics(data.label_map.names, 0.5,
                                                                   FAMILIES["rt_detr"]),
                              data_collator=DetrCollator(build_image_processor(config.model)))
        trainer.train()
    backbone = {id(p) for p in backbone_parameters(model)}
    trained = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(seen.groups) == 4  # decay / no decay, each split into rest and backbone
    everything = [i for params, _, _ in seen.groups for i in params]
    assert sorted(everything) == sorted(trained)  # each parameter in exactly one group
    for params, lr, decay in seen.groups:
        assert params and (params <= backbone or not params & backbone)
        assert lr == pytest.approx(1e-4 if params <= backbone else 1e-3)
        assert decay in (0.0, 0.01)
    assert {decay for params, _, decay in seen.groups if params <= backbone} == {0.0, 0.01}


def test_ratio_one_keeps_the_trainers_two_groups(tiny_run_dict: dict[str, Any]) -> None:
    from detr_core.training.trainer import split_backbone_groups

    config = run_config_from_dict(tiny_run_dict)
    model = build_model(config.model, THREE, "giou", False)
    optimizer = torch.optim.AdamW([{"params": list(model.parameters())}], lr=1e-3)
    assert split_backbone_groups(optimizer, backbone_parameters(model), 1.0) == 0
    assert len(optimizer.param_groups) == 1
    assert split_backbone_groups(optimizer, backbone_parameters(model), 0.5) == 1
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 5e-4]


@pytest.mark.slow
def test_a_run_with_backbone_ratio_and_ema_trains(tiny_run_dict: dict[str, Any],
                                                  tmp_path: Path) -> None:
    tiny_run_dict.update(backbone_lr_ratio=0.25, ema={})
    tiny_run_dict["training_args"].update(optim="schedule_free_adamw")
    result = train_run(run_config_from_dict(tiny_run_dict), tmp_path / "run")
    assert (result.best_model_dir / "model.safetensors").is_file()
    assert "eval_ema_map_50" in result.history[-1]


def test_every_family_has_a_cited_published_recipe() -> None:
    assert set(PUBLISHED) == set(FAMILIES)
    for recipe in PUBLISHED.values():
        assert recipe.source and 0 < recipe.learning_rate < 1e-3
        assert recipe.backbone_lr_ratio == 0.1 and recipe.max_grad_norm == 0.1


def test_recipe_fills_only_what_the_run_leaves_unset(tiny_run_dict: dict[str, Any]) -> None:
    tiny_run_dict["model"] = {"checkpoint": "builtin:tiny-shapes", "image_size": 64}
    tiny_run_dict["training_args"].pop("learning_rate")
    tiny_run_dict["training_args"]["max_grad_norm"] = 0.5
    filled, sources = apply_recipe(run_config_from_dict(tiny_run_dict))
    assert filled.training_args["learning_rate"] == 0.002  # the shipped recipe.json
    assert filled.training_args["max_grad_norm"] == 0.5  # the run's own
    assert filled.training_args["weight_decay"] == 0.0
    assert filled.backbone_lr_ratio == 1.0
    assert sources == {"training_args.learning_rate": "recipe of builtin:tiny-shapes",
                       "backbone_lr_ratio": "recipe of builtin:tiny-shapes",
                       "training_args.weight_decay": "recipe of builtin:tiny-shapes",
                       "training_args.max_grad_norm": "run"}
    # never EMA, warm-up, epochs or image size
    assert filled.ema is None and "warmup_steps" not in filled.training_args
    assert filled.model.image_size == 64


def test_a_preset_trains_from_scratch_without_a_recipe(tiny_run_dict: dict[str, Any]) -> None:
    config = run_config_from_dict(tiny_run_dict)
    assert recipe_for(config.model) is None
    filled, sources = apply_recipe(config)
    assert filled == config
    assert set(sources.values()) == {"run", "default"}


def _saved(folder: Path, family: str) -> Path:
    model = build_model(ModelConfig(preset="tiny", family=family), THREE, "giou", False)
    model.save_pretrained(folder)
    return folder


def test_a_folder_gets_its_family_recipe_or_its_own(tmp_path: Path) -> None:
    folder = _saved(tmp_path / "rt", "rt_detr")
    recipe = recipe_for(ModelConfig(checkpoint=str(folder)))
    assert recipe is PUBLISHED["rt_detr"]
    assert (recipe.learning_rate, recipe.backbone_lr_ratio) == (1e-4, 0.1)
    (folder / "recipe.json").write_text(json.dumps({
        "learning_rate": 3e-4, "backbone_lr_ratio": 0.5, "weight_decay": 0.0,
        "max_grad_norm": 1.0, "source": "measured by us"}))
    own = recipe_for(ModelConfig(checkpoint=str(folder)))
    assert (own.learning_rate, own.backbone_lr_ratio, own.source) == (3e-4, 0.5,
                                                                       "measured by us")


@pytest.mark.parametrize("content", ['{"learning_rate": 1e-4}', "not json",
                                     '{"learning_rate": -1, "backbone_lr_ratio": 1, '
                                     '"weight_decay": 0, "max_grad_norm": 1, "source": "x"}'])
def test_a_broken_recipe_file_is_one_line_naming_it(tmp_path: Path, content: str) -> None:
    folder = _saved(tmp_path / "d", "d_fine")
    (folder / "recipe.json").write_text(content)
    with pytest.raises(UserInputError) as info:
        recipe_for(ModelConfig(checkpoint=str(folder)))
    assert str(info.value).startswith(f"{folder / 'recipe.json'}: model.checkpoint: not a "
                                      "valid recipe")
    assert "\n" not in str(info.value)


def test_backbone_ratio_is_checked(tiny_run_dict: dict[str, Any]) -> None:
    tiny_run_dict["backbone_lr_ratio"] = 0
    with pytest.raises(UserInputError, match=r"backbone_lr_ratio: must be > 0, got 0$"):
        run_config_from_dict(tiny_run_dict)
