"""What a run config *points to* (the checkpoint, the augmentation pipelines, the data),
checked before anything is written or started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from detr_core.config.run_config import RunConfig

if TYPE_CHECKING:
    from detr_core.data.prepare import PreparedData


def check_static_inputs(config: RunConfig) -> None:
    """The checkpoint and the augmentation pipelines: what a run needs besides its data."""
    from detr_core.data.dataset import build_augmentation
    from detr_core.model.model_check import check_checkpoint

    if config.model.checkpoint:
        check_checkpoint(config.model.checkpoint)
    aug = config.augmentation
    build_augmentation(aug.train, aug.min_area, aug.min_visibility, "augmentation.train",
                       seed=config.seed)
    build_augmentation(aug.val, 0.0, 0.0, "augmentation.val", seed=config.seed)


def check_run_inputs(config: RunConfig, prepared: PreparedData | None = None) -> PreparedData:
    """`check_static_inputs`, then the data validated (or generated) unless `prepared`."""
    from detr_core.data.dataset import check_pipelines_fit
    from detr_core.data.prepare import prepare_data

    check_static_inputs(config)
    data = prepared if prepared is not None else prepare_data(config.data)
    check_pipelines_fit(config.augmentation, data.train, data.val)
    return data
