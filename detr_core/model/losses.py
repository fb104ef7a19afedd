"""DETR's set loss with a choice of box IoU term: GIoU (stock), DIoU or CIoU.

The IoU variant appears twice in DETR and a DIoU/CIoU run must change both: in the Hungarian
matcher's cost (which prediction is paired with which ground truth) and in the box loss of the
matched pairs. Both come from `torchvision.ops` (pairwise `*_box_iou` for the cost, elementwise
`*_box_iou_loss` for the loss). The term is reported as `loss_iou` whatever the variant, and is
weighted by `config.giou_loss_coefficient`, so runs with different variants stay comparable;
`loss_bbox` (plain L1) is untouched, which is why the diary selects checkpoints by it.

With `iou_loss="giou"` the result equals transformers' `ForObjectDetectionLoss` (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision import ops
from transformers.loss.loss_for_object_detection import HungarianMatcher, ImageLoss, _set_aux_loss

from detr_core.model.boxes import cxcywh_to_xyxy

PairwiseIou = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
IouLossFn = Callable[..., torch.Tensor]

IOU_VARIANTS: dict[str, tuple[PairwiseIou, IouLossFn]] = {
    "giou": (ops.generalized_box_iou, ops.generalized_box_iou_loss),
    "diou": (ops.distance_box_iou, ops.distance_box_iou_loss),
    "ciou": (ops.complete_box_iou, ops.complete_box_iou_loss),
}


class DivergedTrainingError(FloatingPointError):
    """The model produced non-finite boxes: the run diverged (e.g. an absurd learning rate)."""


class IouHungarianMatcher(HungarianMatcher):
    """DETR's matcher with the IoU cost taken from the chosen torchvision variant."""

    def __init__(self, iou_variant: str, class_cost: float, bbox_cost: float, iou_cost: float):
        super().__init__(class_cost=class_cost, bbox_cost=bbox_cost, giou_cost=iou_cost)
        self.pairwise_iou = IOU_VARIANTS[iou_variant][0]

    @torch.no_grad()
    def forward(self, outputs: dict[str, torch.Tensor], targets: list[dict]) -> list[tuple]:
        from scipy.optimize import linear_sum_assignment

        batch_size, num_queries = outputs["logits"].shape[:2]
        out_prob = outputs["logits"].flatten(0, 1).softmax(-1)
        out_bbox = outputs["pred_boxes"].flatten(0, 1)
        target_ids = torch.cat([t["class_labels"] for t in targets])
        target_bbox = torch.cat([t["boxes"] for t in targets])

        class_cost = -out_prob[:, target_ids]
        bbox_cost = torch.cdist(out_bbox, target_bbox, p=1)
        iou_cost = -self.pairwise_iou(cxcywh_to_xyxy(out_bbox), cxcywh_to_xyxy(target_bbox))
        cost = self.bbox_cost * bbox_cost + self.class_cost * class_cost + self.giou_cost * iou_cost
        max_value = torch.finfo(cost.dtype).max
        cost = torch.nan_to_num(cost, nan=max_value, posinf=max_value, neginf=max_value)
        cost = cost.view(batch_size, num_queries, -1).cpu()

        sizes = [len(t["boxes"]) for t in targets]
        indices = [linear_sum_assignment(c[i]) for i, c in enumerate(cost.split(sizes, -1))]
        return [
            (torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64))
            for i, j in indices
        ]


class IouImageLoss(ImageLoss):
    """DETR's criterion whose box term is L1 + the chosen IoU loss (reported as `loss_iou`)."""

    def __init__(self, iou_variant: str, matcher: nn.Module, num_classes: int, eos_coef: float):
        super().__init__(matcher, num_classes, eos_coef, ["labels", "boxes", "cardinality"])
        self.iou_loss = IOU_VARIANTS[iou_variant][1]

    def loss_boxes(self, outputs: dict, targets: list[dict], indices: list, num_boxes: float):
        idx = self._get_source_permutation_idx(indices)
        source = outputs["pred_boxes"][idx]
        target = torch.cat([t["boxes"][i] for t, (_, i) in zip(targets, indices, strict=True)])
        l1 = nn.functional.l1_loss(source, target, reduction="none")
        iou = self.iou_loss(cxcywh_to_xyxy(source), cxcywh_to_xyxy(target), reduction="sum")
        return {"loss_bbox": l1.sum() / num_boxes, "loss_iou": iou / num_boxes}


class DetrIouLoss:
    """A `loss_function` for `DetrForObjectDetection` with a selectable IoU variant.

    Same signature and return value as transformers' `ForObjectDetectionLoss`:
    `(loss, loss_dict, auxiliary_outputs)`.
    """

    def __init__(self, iou_variant: str) -> None:
        if iou_variant not in IOU_VARIANTS:
            raise ValueError(f"iou_loss must be one of {sorted(IOU_VARIANTS)}, got {iou_variant!r}")
        self.iou_variant = iou_variant

    def __call__(
        self,
        logits: torch.Tensor,
        labels: list[dict],
        device: torch.device,
        pred_boxes: torch.Tensor,
        config: Any,
        outputs_class: torch.Tensor | None = None,
        outputs_coord: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], list | None]:
        if not torch.isfinite(pred_boxes).all():
            raise DivergedTrainingError(
                "predicted boxes are NaN/inf: training diverged (learning rate too high?)"
            )
        matcher = IouHungarianMatcher(
            self.iou_variant, config.class_cost, config.bbox_cost, config.giou_cost
        )
        criterion = IouImageLoss(self.iou_variant, matcher, config.num_labels,
                                 config.eos_coefficient).to(device)
        outputs: dict[str, Any] = {"logits": logits, "pred_boxes": pred_boxes}
        auxiliary_outputs = None
        if config.auxiliary_loss:
            auxiliary_outputs = _set_aux_loss(outputs_class, outputs_coord)
            outputs["auxiliary_outputs"] = auxiliary_outputs
        loss_dict = criterion(outputs, labels)
        base_weights = {"loss_ce": 1.0, "loss_bbox": config.bbox_loss_coefficient,
                        "loss_iou": config.giou_loss_coefficient}
        weights = dict(base_weights)
        if config.auxiliary_loss:
            for i in range(config.decoder_layers - 1):
                weights.update({f"{k}_{i}": v for k, v in base_weights.items()})
        loss = sum(loss_dict[k] * weights[k] for k in loss_dict if k in weights)
        return loss, loss_dict, auxiliary_outputs
