"""Optimizer steps per second of the embedded default's model and data, nothing else.

Shared by the benchmarks that compare layouts or settings side by side (trial packing, frozen
vs trained backbone): a plain loop over the default run's training data (augmentation and
collation included) through the default model, AdamW on its trainable parameters, the first
`warmup` steps excluded from the timing. No evaluation, no Trainer, no checkpoints.
"""

from __future__ import annotations

import time
from typing import Any


def steps_per_second(steps: int, threads: int | None = None, freeze_backbone: bool | None = None,
                     warmup: int = 5, model: dict[str, Any] | None = None,
                     config: Any = None) -> float:
    """Time `steps` optimizer steps of the default run (backbone frozen as asked; `model`: another
    `model:` section, e.g. `{"preset": "tiny", "family": "d_fine"}`; `config`: another
    `RunConfig` to time instead of the default, its data, augmentation and batch size)."""
    import torch
    from torch.utils.data import DataLoader

    from detr_core.config.run_config import ModelConfig, load_default_run_config
    from detr_core.data.dataset import DetrCollator
    from detr_core.data.prepare import prepare_data
    from detr_core.model.build import build_image_processor, build_model
    from detr_core.train import build_datasets

    if threads is not None:
        torch.set_num_threads(threads)
    config = load_default_run_config() if config is None else config
    if model is not None:
        config.model = ModelConfig(**{"image_size": config.model.image_size, **model})
    freeze = config.freeze_backbone if freeze_backbone is None else freeze_backbone
    data = prepare_data(config.data, validate=False, quiet=True)
    batch_size = int(config.training_args.get("per_device_train_batch_size", 8))
    loader = DataLoader(build_datasets(config, data)["train"], batch_size=batch_size, shuffle=True,
                        collate_fn=DetrCollator(build_image_processor(config.model)))
    detector = build_model(config.model, data.label_map, config.iou_loss, freeze)
    optimizer = torch.optim.AdamW([p for p in detector.parameters() if p.requires_grad], lr=5e-4)
    detector.train()
    batches: Any = iter(loader)
    start = time.perf_counter()
    for done in range(steps + warmup):
        if done == warmup:
            start = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        loss = detector(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)
