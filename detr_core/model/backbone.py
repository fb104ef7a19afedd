"""The backbone of a DETR-family detector: which parameters it has, freezing it, and its
batch norms.

Every supported member keeps its convolutional backbone at `model.model.backbone` (DETR's,
Conditional and Deformable DETR's conv encoder, RT-DETR's and D-FINE's). `freeze_backbone`
(diary 12_5..12_7) and the backbone learning rate (`backbone_lr_ratio`, an optimizer group of
its own: `detr_core.training.optimizer_groups`) act on exactly `backbone_parameters`.

Batch norms: DETR, Conditional and Deformable DETR replace every backbone batch norm with a
frozen one when the model is built (fixed statistics and affine, whatever the run says).
RT-DETR and D-FINE do so when `freeze_backbone_batch_norms` is true (their default; the tiny
from-scratch presets set it false, a random backbone needs live ones); a frozen backbone then
also gets its live batch norms frozen here (torchvision's `FrozenBatchNorm2d`, same state-dict
names), so nothing in it moves, not even the running statistics.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.ops import FrozenBatchNorm2d


def backbone_module(model: Any) -> torch.nn.Module:
    """The convolutional backbone of any supported family."""
    return model.model.backbone


def backbone_parameters(model: Any) -> list[torch.nn.Parameter]:
    """Exactly the parameters `freeze_backbone` and the backbone learning rate act on."""
    return list(backbone_module(model).parameters())


def set_backbone_trainable(model: Any, trainable: bool) -> None:
    """Freeze or unfreeze every backbone parameter (transformers freezes an HF ResNet
    backbone's early stages at construction for DETR-style families: "trainable" is set
    explicitly); a frozen one also gets its live batch norms frozen."""
    backbone = backbone_module(model)
    for parameter in backbone.parameters():
        parameter.requires_grad_(trainable)
    if not trainable:
        freeze_batch_norms(backbone)


def freeze_batch_norms(module: torch.nn.Module) -> int:
    """Replace every `BatchNorm2d` below `module` by a `FrozenBatchNorm2d` holding its
    statistics and affine (the state-dict names stay); returns how many were replaced."""
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight)
                frozen.bias.copy_(child.bias)
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen.to(child.weight.device))
            replaced += 1
        else:
            replaced += freeze_batch_norms(child)
    return replaced
