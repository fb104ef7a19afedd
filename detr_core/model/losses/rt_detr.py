"""RT-DETR and RT-DETRv2 (`transformers.loss.loss_rt_detr`): the matcher reads its weights
from the config (`matcher_*`), the criterion weights each term itself (`weight_loss_*`) and adds
the encoder proposals (`_aux_<last>`) and denoising groups (`_dn_<i>`). The varifocal loss's
soft target is the matched pairs' plain IoU, not a GIoU term: it stays as upstream has it."""

from __future__ import annotations

from typing import Any

import torch
from transformers.loss.loss_rt_detr import RTDetrHungarianMatcher, RTDetrLoss

from detr_core.model.losses.common import IouBoxLossMixin, IouCostMixin


class IouRTDetrHungarianMatcher(IouCostMixin, RTDetrHungarianMatcher):
    """RT-DETR's matcher (also D-FINE's) with the chosen IoU cost.

    `IouRTDetrHungarianMatcher(iou_variant, config)`; `config.matcher_giou_cost` weights the
    variant's IoU cost.
    """

    @torch.no_grad()
    def forward(self, outputs: dict[str, torch.Tensor],
                targets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Upstream's cost: focal (or softmax) class cost, L1, -IoU."""
        target_ids = torch.cat([t["class_labels"] for t in targets])
        logits = outputs["logits"].flatten(0, 1)
        if self.use_focal_loss:
            out_prob = logits.sigmoid()[:, target_ids]
            neg = (1 - self.alpha) * (out_prob**self.gamma) * (-(1 - out_prob + 1e-8).log())
            pos = self.alpha * ((1 - out_prob) ** self.gamma) * (-(out_prob + 1e-8).log())
            class_cost = pos - neg
        else:
            class_cost = -logits.softmax(-1)[:, target_ids]
        return self.assign(outputs, targets, class_cost)


class IouRTDetrLoss(IouBoxLossMixin, RTDetrLoss):
    """RT-DETR's criterion with the chosen IoU in both its matcher and its box loss.

    `IouRTDetrLoss(iou_variant, config)`.
    """

    def __init__(self, iou_variant: str, config: Any) -> None:
        super().__init__(iou_variant, config)
        self.matcher = IouRTDetrHungarianMatcher(iou_variant, config)
