"""Conditional / Deformable / DAB-DETR (`transformers.loss.loss_deformable_detr`): sigmoid
focal class cost (alpha 0.25, gamma 2, fixed upstream) and focal classification loss; the
criterion inherits DETR's `loss_boxes`, which is where the IoU term is swapped."""

from __future__ import annotations

import torch
from transformers.loss.loss_deformable_detr import (
    DeformableDetrHungarianMatcher,
    DeformableDetrImageLoss,
)

from detr_core.model.losses.common import IouBoxLossMixin, IouCostMixin

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


class IouDeformableDetrHungarianMatcher(IouCostMixin, DeformableDetrHungarianMatcher):
    """Deformable DETR's matcher with the chosen IoU cost.

    `IouDeformableDetrHungarianMatcher(iou_variant, class_cost, bbox_cost, giou_cost)`.
    """

    @torch.no_grad()
    def forward(self, outputs: dict[str, torch.Tensor],
                targets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Upstream's cost: focal class cost on sigmoid probabilities, L1, -IoU."""
        out_prob = outputs["logits"].flatten(0, 1).sigmoid()
        target_ids = torch.cat([t["class_labels"] for t in targets])
        neg = (1 - FOCAL_ALPHA) * (out_prob**FOCAL_GAMMA) * (-(1 - out_prob + 1e-8).log())
        pos = FOCAL_ALPHA * ((1 - out_prob) ** FOCAL_GAMMA) * (-(out_prob + 1e-8).log())
        class_cost = pos[:, target_ids] - neg[:, target_ids]
        return self.assign(outputs, targets, class_cost)


class IouDeformableDetrImageLoss(IouBoxLossMixin, DeformableDetrImageLoss):
    """Deformable DETR's criterion (focal loss) whose box term is L1 + the chosen IoU loss.

    `IouDeformableDetrImageLoss(iou_variant, matcher, num_classes, focal_alpha, losses)`.
    """
