"""Averaged weights (timm's `ModelEmaV3` with warm-up), evaluated beside the model: an early
evaluation (an ASHA rung) sees where a noisy run is heading. Every checkpoint keeps the average
in `<checkpoint>/ema/`, for export when an `ema_*` metric chose it and for resuming.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from detr_core.config.metric_names import EMA_PREFIX, is_ema_metric
from detr_core.config.run_config import EmaConfig
from detr_core.files.file_io import EMA_DIR

PROCESSOR_FILE = "preprocessor_config.json"


def weights_folder(checkpoint: str | Path, metric: str | None) -> Path:
    """The `save_pretrained` folder of a checkpoint holding the weights `metric` judged."""
    checkpoint = Path(checkpoint)
    if metric is not None and is_ema_metric(metric) and (checkpoint / EMA_DIR).is_dir():
        return checkpoint / EMA_DIR
    return checkpoint


class EmaCallback(TrainerCallback):
    """Keeps the moving average of a Trainer's model."""

    def __init__(self, config: EmaConfig, resume_from: str | Path | None = None) -> None:
        self.config = config
        self.resume_from = Path(resume_from) if resume_from else None
        self.ema: Any = None
        self._source: Any = None  # the model the tensor lists below were built for
        self._casts = False  # dtypes or devices differ: timm's update (it casts every step)
        self._averaged: list[torch.Tensor] = []
        self._current: list[torch.Tensor] = []
        self._copied: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        from timm.utils.model_ema import ModelEmaV3

        self.ema = ModelEmaV3(model, decay=self.config.decay, use_warmup=True,
                              warmup_power=self.config.warmup_power)
        saved = self.resume_from / EMA_DIR if self.resume_from else None
        if saved is not None and saved.is_dir():
            restored = type(model).from_pretrained(saved)
            self.ema.module.load_state_dict(restored.state_dict())

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        # ModelEmaV3.update on tensor lists built once (its state_dict walk: 3 of 80 ms a step)
        if model is not self._source:
            self._pair_tensors(model)
        if self._casts:
            self.ema.update(model, step=state.global_step)
            return
        weight = 1.0 - self.ema.get_decay(state.global_step)
        torch._foreach_lerp_(self._averaged, self._current, weight=weight)
        for averaged, current in self._copied:
            averaged.copy_(current)

    def _pair_tensors(self, model: Any) -> None:
        self._source, self._casts = model, False
        self._averaged, self._current, self._copied = [], [], []
        for averaged, current in zip(self.ema.module.state_dict().values(),
                                     model.state_dict().values(), strict=True):
            if averaged.dtype != current.dtype or averaged.device != current.device:
                self._casts = True
                return
            if averaged.is_floating_point():
                self._averaged.append(averaged)
                self._current.append(current)
            else:
                self._copied.append((averaged, current))

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any):
        # the Trainer saves at new best steps only (save_strategy "best") and names the folder
        checkpoint = Path(state.best_model_checkpoint or
                          Path(args.output_dir) / f"checkpoint-{state.global_step}")
        # rank 0 of a data-parallel job only: the others' checkpoints hold no model
        if state.is_world_process_zero and checkpoint.is_dir() and \
                checkpoint.name.endswith(f"-{state.global_step}"):
            target = checkpoint / EMA_DIR  # with the checkpoint's processor
            self.ema.module.save_pretrained(target)
            if (checkpoint / PROCESSOR_FILE).is_file():
                shutil.copy2(checkpoint / PROCESSOR_FILE, target / PROCESSOR_FILE)

    @property
    def module(self) -> Any:
        """The averaged model (None before training starts)."""
        return None if self.ema is None else self.ema.module


def evaluate_averaged(trainer: Any, averaged: torch.nn.Module, dataset: Any,
                      prefix: str) -> dict[str, float]:
    """The Trainer's evaluation of the averaged weights (swapped in), as `<prefix>_ema_*`."""
    model = trainer.model
    own = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(averaged.state_dict())
    try:
        return trainer.evaluate(dataset, metric_key_prefix=f"{prefix}_{EMA_PREFIX.rstrip('_')}")
    finally:
        model.load_state_dict(own)
