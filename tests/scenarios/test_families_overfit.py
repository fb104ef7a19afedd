"""A tiny model of each family learns: it overfits 8 training images (train mAP@.5 >= 0.9).

What would catch a loss that trains the wrong thing (a matcher paired with the wrong boxes, an
IoU term of the wrong sign, scores decoded as another family's) where the unit tests compare
single loss values. From random weights, except DETR: a from-scratch DETR takes thousands of
steps to find anything (README, "The DETR family"), so its tiny model starts from the shipped
`builtin:tiny-shapes` (pretrained on other classes: its heads start afresh here). Step counts
and learning rates were set from probes here with a margin (each reached 1.0 in the probe).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from detr_core.config.run_config import run_config_from_dict
from detr_core.evaluate import evaluate_model
from detr_core.train import train_run

pytestmark = pytest.mark.slow

#: family -> (optimizer steps at batch 8, learning rate)
SCHEDULES = {
    "detr": (100, 2e-3),
    "conditional_detr": (500, 3e-3),
    "deformable_detr": (200, 2e-3),
    "rt_detr": (200, 2e-3),
    "rt_detr_v2": (200, 2e-3),
    "d_fine": (250, 2e-3),
}


@pytest.mark.parametrize("family", list(SCHEDULES))
def test_a_tiny_model_overfits_eight_images(tmp_path: Path, family: str) -> None:
    steps, lr = SCHEDULES[family]
    model = ({"checkpoint": "builtin:tiny-shapes"} if family == "detr"
             else {"preset": "tiny", "family": family})
    config = run_config_from_dict({
        "seed": 0, "num_threads": 2, "iou_loss": "giou", "backbone_lr_ratio": 1.0,
        "data": {"synthetic": {"num_train": 8, "num_val": 8, "num_test": 0, "image_size": 64,
                               "max_objects": 2}},
        "model": {**model, "image_size": 64},
        "augmentation": {"train": []},
        "training_args": {"max_steps": steps, "logging_steps": steps, "learning_rate": lr,
                          "per_device_train_batch_size": 8, "weight_decay": 0.0,
                          "max_grad_norm": 0.1, "warmup_steps": 0,
                          "lr_scheduler_type": "constant", "optim": "adamw_torch_fused"},
    })
    result = train_run(config, tmp_path / "run", evaluate_test=False)
    metrics = evaluate_model(result.best_model_dir, config, "train")
    assert metrics["map_50"] >= 0.9, metrics
