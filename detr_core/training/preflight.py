"""Everything a run depends on, checked before anything is written or started.

`detr_core.config.run_config` checks what a run config *says* (keys, types, ranges). This
module checks what it *points to*: the checkpoint (`detr_core.model.model_check`), the
albumentations pipelines (built once, so a bad argument names its transform and field; then
run once on each split's smallest images: `detr_core.data.dataset`), and
the data (COCO JSON and every image file, `detr_core.data.coco`; a synthetic dataset is
generated first). A bad input is one `UserInputError` line; no output folder exists yet when
it is raised.

`python -m detr_core.train` and `detr_core.evaluate` call it first thing; a search
driver calls it once for the whole search (`search.space.preflight`), and a search trial calls
`check_static_inputs` on the node that trains (and `check_run_inputs` where the driver could
not see that node's data).
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
    """`check_static_inputs`, then the data validated (or generated) unless `prepared` is given.

    Returns the prepared data the run trains on.
    """
    from detr_core.data.dataset import check_pipelines_fit
    from detr_core.data.prepare import prepare_data

    check_static_inputs(config)
    data = prepared if prepared is not None else prepare_data(config.data)
    check_pipelines_fit(config.augmentation, data.train, data.val)
    return data
