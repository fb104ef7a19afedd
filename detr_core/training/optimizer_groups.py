"""The backbone's own learning rate: its parameters in optimizer groups of their own.

Every published DETR-family recipe trains the pretrained backbone 10x slower than the rest
(`detr_core.model.recipes`); the HF Trainer builds one decay and one no-decay group for all
parameters. `split_backbone_groups` moves the backbone's parameters of each group into a new
group with the same settings (the same weight decay, so the decay / no-decay split holds) at
`ratio` x the group's learning rate. Done on the optimizer the Trainer built, before its first
step and before the learning-rate scheduler reads the groups' rates, so it works for every
optimizer the run config allows (fused AdamW, schedule-free AdamW: each keeps its per-group
state) and every scheduler (which scales each group's own initial rate); averaged weights
(EMA) average the model, whatever its groups.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def split_backbone_groups(optimizer: torch.optim.Optimizer,
                          backbone: Iterable[torch.nn.Parameter], ratio: float) -> int:
    """Give the `backbone` parameters of every group a group of their own at `ratio` x its
    learning rate; returns how many groups were added (0 for a ratio of 1: nothing changes).
    """
    if ratio == 1.0:
        return 0
    if optimizer.state:
        raise RuntimeError("the backbone groups must be made before the first step")
    ids = {id(p) for p in backbone}
    added = []
    for group in optimizer.param_groups:
        mine = [p for p in group["params"] if id(p) in ids]
        if not mine:
            continue
        group["params"] = [p for p in group["params"] if id(p) not in ids]
        settings: dict[str, Any] = {k: v for k, v in group.items() if k != "params"}
        added.append({**settings, "params": mine, "lr": group["lr"] * ratio})
    for group in added:
        optimizer.add_param_group(group)
    return len(added)
