"""What a run changes when it is one rank of a data-parallel job (a `torch.distributed` process
group set up before it, e.g. by Ray Train): its rank and batch norm that cannot be left per
rank (the box count the losses share: `detr_core.model.losses.box_counts`).

A single process (no process group) is left exactly as it was.
"""

from __future__ import annotations

import torch
from torch import nn


def world() -> tuple[int, int]:
    """(this process's rank, the number of ranks); (0, 1) outside a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _hold_statistics(module: nn.Module, args: object) -> None:
    module.training = False  # the running statistics normalise, and are not updated


def settle_batch_norm(model: nn.Module, on_gpu: bool) -> str | None:
    """Make the trainable batch norm layers (RT-DETR's and D-FINE's encoders: the backbones'
    are frozen already) fit a data-parallel job: synchronised across ranks on GPUs; on CPUs,
    where torch's `SyncBatchNorm` does not run, their running statistics are frozen at the
    checkpoint's values (scale and shift still train). Returns which, None when there are none
    or outside a process group."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if world()[1] == 1 or not layers:
        return None
    if on_gpu:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return f"{len(layers)} batch norm layers synchronised across ranks"
    for layer in layers:
        layer.register_forward_pre_hook(_hold_statistics)
    return f"{len(layers)} batch norm layers with their running statistics frozen"
