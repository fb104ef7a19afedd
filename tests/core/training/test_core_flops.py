"""`DetrTrainer.floating_point_ops`: the Trainer's estimate, the parameters counted once.

The Trainer adds `floating_point_ops(inputs)` to `total_flos` at every optimizer step, and its
own version walks every named module and parameter of the model each time (about 2 % of a
CPU step of the embedded default). A real `train()` of a tiny run: the count is taken once,
and the value for a batch equals the Trainer's own formula on that batch.
"""

from __future__ import annotations

import tempfile
from typing import Any

from transformers import Trainer, TrainerCallback

from detr_core.config.run_config import run_config_from_dict
from detr_core.config.training_args import build_training_args
from detr_core.data.dataset import DetrCollator
from detr_core.data.prepare import prepare_data
from detr_core.model.build import build_image_processor, build_model
from detr_core.train import build_datasets
from detr_core.training.trainer import DetrTrainer


class StopAfterFour(TrainerCallback):
    """Four optimizer steps, then stop (before any evaluation)."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        control.should_training_stop = state.global_step >= 4


def test_parameters_are_counted_once_and_the_estimate_is_the_trainers(
        tiny_run_dict: dict[str, Any]) -> None:
    tiny_run_dict["training_args"].update(max_steps=40, logging_steps=40)
    config = run_config_from_dict(tiny_run_dict)
    data = prepare_data(config.data, validate=False, quiet=True)
    datasets = build_datasets(config, data)
    model = build_model(config.model, data.label_map, config.iou_loss, config.freeze_backbone)
    counted = []
    original = model.num_parameters

    def counting(*args: Any, **kwargs: Any) -> int:
        counted.append(kwargs)
        return original(*args, **kwargs)

    model.num_parameters = counting
    collator = DetrCollator(build_image_processor(config.model))
    with tempfile.TemporaryDirectory() as out:
        args = build_training_args(config.training_args, out, config.seed)
        trainer = DetrTrainer(model=model, args=args, train_dataset=datasets["train"],
                              eval_dataset=datasets["val"], data_collator=collator,
                              callbacks=[StopAfterFour()])
        trainer.train()
    assert counted == [{"exclude_embeddings": True}]
    assert trainer.state.global_step == 4 and trainer.state.total_flos > 0
    batch = collator([datasets["train"][i] for i in range(2)])
    ours = trainer.floating_point_ops(batch)
    assert ours == Trainer.floating_point_ops(trainer, batch) > 0
    assert len(counted) == 2  # the Trainer's own version counted again; ours did not
