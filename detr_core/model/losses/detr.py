"""DETR (`transformers.loss.loss_for_object_detection`): softmax class cost, cross-entropy
with a "no object" class."""

from __future__ import annotations

import torch
from transformers.loss.loss_for_object_detection import HungarianMatcher, ImageLoss

from detr_core.model.losses.common import IouBoxLossMixin, IouCostMixin


class IouHungarianMatcher(IouCostMixin, HungarianMatcher):
    """DETR's matcher with the IoU cost taken from the chosen torchvision variant.

    `IouHungarianMatcher(iou_variant, class_cost, bbox_cost, giou_cost)`; `giou_cost` (upstream's
    name) weights the variant's IoU cost.
    """

    @torch.no_grad()
    def forward(self, outputs: dict[str, torch.Tensor],
                targets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Upstream's cost: -softmax probability of the target class, L1, -IoU."""
        target_ids = torch.cat([t["class_labels"] for t in targets])
        class_cost = -outputs["logits"].flatten(0, 1).softmax(-1)[:, target_ids]
        return self.assign(outputs, targets, class_cost)


class IouImageLoss(IouBoxLossMixin, ImageLoss):
    """DETR's criterion whose box term is L1 + the chosen IoU loss.

    `IouImageLoss(iou_variant, matcher, num_classes, eos_coef, losses)`.
    """
