"""D-FINE (`transformers.loss.loss_d_fine`): RT-DETR's criterion and matcher plus the
fine-grained localisation (FGL) and distillation (DDF) terms of `loss_local`, which weight by
the matched pairs' plain IoU: not a GIoU term, left as upstream has it."""

from __future__ import annotations

from typing import Any

from transformers.loss.loss_d_fine import DFineLoss

from detr_core.model.losses.common import IouBoxLossMixin
from detr_core.model.losses.rt_detr import IouRTDetrHungarianMatcher


class IouDFineLoss(IouBoxLossMixin, DFineLoss):
    """D-FINE's criterion with the chosen IoU in its (RT-DETR) matcher and its box loss.

    `IouDFineLoss(iou_variant, config)`.
    """

    def __init__(self, iou_variant: str, config: Any) -> None:
        super().__init__(iou_variant, config)
        self.matcher = IouRTDetrHungarianMatcher(iou_variant, config)
