"""Schedule-free AdamW (`optim: schedule_free_adamw`) gets its warm-up in optimizer steps.

transformers hands `warmup_steps` to the schedule-free optimizer as it is: a ratio such as
0.1 (transformers 5's only way to give a share of the run) would be a warm-up of 0.1 steps,
i.e. a first step at 10x the learning rate, which wrecks a fine-tuning from pretrained
weights. `DetrTrainer.create_optimizer_and_scheduler` converts the ratio. (It once compared
the option's `str()`, "OptimizerNames.SCHEDULE_FREE_ADAMW", with "schedule_free", so the
conversion never ran; this test reads the optimizer itself.)
"""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
import torch

from detr_core.config import build_training_args, run_config_from_dict
from detr_core.data import prepare_data
from detr_core.model import build_model
from detr_core.training import DetrTrainer, build_datasets


@pytest.mark.parametrize(("warmup", "in_steps"), [(0.1, 4), (0.0, 0), (3, 3)])
def test_schedule_free_warm_up_is_in_steps(tiny_run_dict: dict[str, Any], warmup: float,
                                           in_steps: int) -> None:
    tiny_run_dict["training_args"].update(optim="schedule_free_adamw", max_steps=40,
                                          lr_scheduler_type="constant", warmup_steps=warmup)
    config = run_config_from_dict(tiny_run_dict)
    data = prepare_data(config.data, validate=False, quiet=True)
    datasets = build_datasets(config, data)
    model = build_model(config.model, data.label_map, config.iou_loss, config.freeze_backbone)
    with tempfile.TemporaryDirectory() as out:
        args = build_training_args(config.training_args, out, config.seed)
        trainer = DetrTrainer(model=model, args=args, train_dataset=datasets["train"],
                              eval_dataset=datasets["val"])
        trainer.create_optimizer_and_scheduler(num_training_steps=40)
    optimizer = trainer.optimizer
    assert [g["warmup_steps"] for g in optimizer.param_groups] == [in_steps] * len(
        optimizer.param_groups)
    assert trainer.args.warmup_steps == warmup  # the scheduler and a saved config see the ratio
    # the first step's learning rate: lr / warm-up steps (never lr / 0.1 = 10x lr)
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    optimizer.train()
    optimizer.step()
    first = optimizer.param_groups[0]["scheduled_lr"]
    assert first == pytest.approx(1e-3 / in_steps if in_steps else 1e-3)
