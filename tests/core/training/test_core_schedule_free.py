"""Schedule-free AdamW (`optim: schedule_free_adamw`) gets its warm-up in optimizer steps.

transformers hands `warmup_steps` to the schedule-free optimizer as it is: a ratio such as
0.1 (transformers 5's only way to give a share of the run) would be a warm-up of 0.1 steps,
i.e. a first step at 10x the learning rate, which wrecks a fine-tuning from pretrained
weights. `DetrTrainer.create_optimizer` converts the ratio. Checked on the optimizer a real
`train()` made (an earlier fix overrode a method `train()` does not call, and compared the
option's `str()`, "OptimizerNames.SCHEDULE_FREE_ADAMW", with "schedule_free": it never ran).
"""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
from transformers import TrainerCallback

from detr_core.config.run_config import run_config_from_dict
from detr_core.config.training_args import build_training_args
from detr_core.data.dataset import DetrCollator
from detr_core.data.prepare import prepare_data
from detr_core.model.build import build_image_processor, build_model
from detr_core.train import build_datasets
from detr_core.training.trainer import DetrTrainer


class FirstSteps(TrainerCallback):
    """The optimizer's warm-up and the learning rate of its first two steps."""

    def __init__(self) -> None:
        self.warmups: list[Any] = []
        self.lrs: list[float] = []

    def on_step_end(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                    **kw: Any) -> None:
        groups = optimizer.param_groups
        self.warmups = [g["warmup_steps"] for g in groups]
        self.lrs.append(groups[0]["scheduled_lr"])
        control.should_training_stop = state.global_step >= 2


@pytest.mark.parametrize(("warmup", "in_steps"), [(0.1, 4), (0.0, 0), (3, 3)])
def test_schedule_free_warm_up_is_in_steps(tiny_run_dict: dict[str, Any], warmup: float,
                                           in_steps: int) -> None:
    tiny_run_dict["training_args"].update(optim="schedule_free_adamw", max_steps=40,
                                          logging_steps=40, lr_scheduler_type="constant",
                                          warmup_steps=warmup)
    config = run_config_from_dict(tiny_run_dict)
    data = prepare_data(config.data, validate=False, quiet=True)
    datasets = build_datasets(config, data)
    model = build_model(config.model, data.label_map, config.iou_loss, config.freeze_backbone)
    seen = FirstSteps()
    with tempfile.TemporaryDirectory() as out:
        args = build_training_args(config.training_args, out, config.seed)
        trainer = DetrTrainer(model=model, args=args, train_dataset=datasets["train"],
                              eval_dataset=datasets["val"], callbacks=[seen],
                              data_collator=DetrCollator(build_image_processor(config.model)))
        trainer.train()
    assert seen.warmups == [in_steps] * len(seen.warmups)
    assert trainer.args.warmup_steps == warmup  # the scheduler and a saved config see the ratio
    # the first steps' learning rate: lr * step / warm-up steps (never lr / 0.1 = 10x lr)
    expected = [1e-3 * k / in_steps for k in (1, 2)] if in_steps else [1e-3, 1e-3]
    assert seen.lrs == pytest.approx(expected)


def test_eval_then_train_gives_the_training_weights_back_bit_for_bit() -> None:
    """`exact_mode_switches`: eval() still moves the weights to the optimizer's average (what
    an evaluation, and a checkpoint saved after it, sees); train() restores the exact training
    weights, which schedulefree's own inverse lerp does not. Other optimizers are untouched."""
    import schedulefree
    import torch

    from detr_core.training.trainer import exact_mode_switches, is_schedule_free

    torch.manual_seed(0)
    weights = torch.nn.Parameter(torch.randn(4096))
    optimizer = schedulefree.AdamWScheduleFree([weights], lr=1e-2, warmup_steps=2)
    plain = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    assert exact_mode_switches(plain) is plain and not is_schedule_free(plain)
    assert exact_mode_switches(optimizer) is optimizer and is_schedule_free(optimizer)
    optimizer.train()
    for _ in range(5):
        weights.grad = torch.randn(4096)
        optimizer.step()
    training = weights.detach().clone()
    average = torch.lerp(training, optimizer.state[weights]["z"], 1 - 1 / 0.9)
    optimizer.eval()
    assert torch.equal(weights.detach(), average)
    assert not optimizer.param_groups[0]["train_mode"]
    optimizer.train()
    assert torch.equal(weights.detach(), training)
    assert optimizer.param_groups[0]["train_mode"]
    # schedulefree's own way back is off by rounding: what the wrapper exists for
    rounded = average.clone().lerp_(optimizer.state[weights]["z"], 1 - 0.9)
    assert not torch.equal(rounded, training)
