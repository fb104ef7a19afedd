"""What every family's IoU-swappable loss shares: the variants, the divergence error, the
matcher cost and the box loss with the chosen IoU term, and the copy of an upstream loss
function that builds our matcher / criterion instead of transformers' own.

The IoU variant appears twice in a DETR-family loss and a DIoU/CIoU run must change both: in
the Hungarian matcher's cost (which prediction is paired with which ground truth) and in the box
loss of the matched pairs. Both come from `torchvision.ops` (pairwise `*_box_iou` for the cost,
elementwise `*_box_iou_loss` for the loss). Plain IoU used elsewhere (RT-DETR's varifocal soft
target, D-FINE's FGL/DDF weights) is not a GIoU term and stays as upstream has it.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision import ops

from detr_core.model.boxes import cxcywh_to_xyxy

PairwiseIou = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
IouLossFn = Callable[..., torch.Tensor]

IOU_VARIANTS: dict[str, tuple[PairwiseIou, IouLossFn]] = {
    "giou": (ops.generalized_box_iou, ops.generalized_box_iou_loss),
    "diou": (ops.distance_box_iou, ops.distance_box_iou_loss),
    "ciou": (ops.complete_box_iou, ops.complete_box_iou_loss),
}

#: Upstream's name of the IoU term (in each criterion and in every weight dict); it is kept
#: inside the loss computation so that upstream's weights apply, and renamed on the way out.
UPSTREAM_TERM = "loss_giou"
TERM = "loss_iou"


class DivergedTrainingError(FloatingPointError):
    """The model produced non-finite boxes: the run diverged (e.g. an absurd learning rate)."""


def check_variant(iou_variant: str) -> None:
    """Refuse an unknown variant, listing the valid ones."""
    if iou_variant not in IOU_VARIANTS:
        raise ValueError(f"iou_loss must be one of {sorted(IOU_VARIANTS)}, got {iou_variant!r}")


def check_finite(pred_boxes: torch.Tensor) -> None:
    """Raise `DivergedTrainingError` when a predicted box is NaN/inf (the matcher would
    otherwise hide it behind its max-cost fallback and training would go on producing NaN)."""
    if not torch.isfinite(pred_boxes).all():
        raise DivergedTrainingError(
            "predicted boxes are NaN/inf: training diverged (learning rate too high?)"
        )


def rename_iou_terms(loss_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`loss_giou*` -> `loss_iou*` (`loss_giou_aux_0` -> `loss_iou_aux_0`), order kept, so runs
    with different variants log the same names."""
    return {(TERM + key[len(UPSTREAM_TERM):] if key.startswith(UPSTREAM_TERM) else key): value
            for key, value in loss_dict.items()}


class IouCostMixin:
    """A Hungarian matcher whose IoU cost is the chosen variant's pairwise IoU.

    Mixed in before an upstream matcher class (which holds `class_cost`, `bbox_cost` and
    `giou_cost`, the latter weighting the IoU cost whatever the variant); the subclass's
    `forward` computes its family's class cost and hands it to `assign`.
    """

    class_cost: float
    bbox_cost: float
    giou_cost: float

    def __init__(self, iou_variant: str, *args: Any, **kwargs: Any) -> None:
        check_variant(iou_variant)
        super().__init__(*args, **kwargs)
        self.iou_variant = iou_variant
        self.pairwise_iou = IOU_VARIANTS[iou_variant][0]

    @torch.no_grad()
    def assign(self, outputs: dict[str, torch.Tensor], targets: list[dict],
               class_cost: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Upstream's assignment: L1 + IoU + class cost, non-finite costs made the largest,
        then `linear_sum_assignment` per image. `class_cost` is (batch * queries, targets)."""
        from scipy.optimize import linear_sum_assignment

        batch_size, num_queries = outputs["logits"].shape[:2]
        out_bbox = outputs["pred_boxes"].flatten(0, 1)
        target_bbox = torch.cat([t["boxes"] for t in targets])
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


class IouBoxLossMixin:
    """A criterion whose `loss_boxes` is L1 + the chosen variant's IoU loss.

    Mixed in before an upstream criterion (`ImageLoss`, `DeformableDetrImageLoss`, `RTDetrLoss`,
    `DFineLoss`: their `loss_boxes` are the same L1 + GIoU). The IoU term is returned under
    upstream's key `loss_giou` so that upstream's weighting (its weight dicts) applies unchanged;
    `rename_iou_terms` renames it once the loss is computed.
    """

    _get_source_permutation_idx: Callable[[list], tuple[torch.Tensor, torch.Tensor]]

    def __init__(self, iou_variant: str, *args: Any, **kwargs: Any) -> None:
        check_variant(iou_variant)
        super().__init__(*args, **kwargs)
        self.iou_variant = iou_variant
        self.iou_loss = IOU_VARIANTS[iou_variant][1]

    def loss_boxes(self, outputs: dict, targets: list[dict], indices: list,
                   num_boxes: float) -> dict[str, torch.Tensor]:
        """L1 and IoU loss over the matched pairs, each summed and divided by `num_boxes`."""
        if "pred_boxes" not in outputs:
            raise KeyError("No predicted boxes found in outputs")
        idx = self._get_source_permutation_idx(indices)
        source = outputs["pred_boxes"][idx]
        target = torch.cat([t["boxes"][i] for t, (_, i) in zip(targets, indices, strict=True)])
        l1 = nn.functional.l1_loss(source, target, reduction="none")
        iou = self.iou_loss(cxcywh_to_xyxy(source), cxcywh_to_xyxy(target), reduction="sum")
        return {"loss_bbox": l1.sum() / num_boxes, UPSTREAM_TERM: iou / num_boxes}


def with_globals(function: Callable, replacements: dict[str, Any]) -> Callable:
    """A copy of the upstream loss `function` in which the global names of `replacements`
    (the matcher / criterion classes it instantiates) resolve to ours.

    Upstream's packing of the model outputs (auxiliary layers, encoder proposals, denoising
    groups, D-FINE's corners) is reused as is, and nothing shared is changed: the copy has a
    globals dict of its own, transformers' module and function stay untouched (Ray workers run
    trials of other variants in the same process). A name the function no longer uses means
    transformers changed: refused, rather than silently computing GIoU. Relies on upstream
    internals (the global names each loss function instantiates), checked against transformers
    5.25; `tests/core/model/test_family_losses.py` fails on a version that changes them.
    """
    code = function.__code__
    unused = [name for name in replacements
              if name not in code.co_names or name not in function.__globals__]
    if unused:
        raise RuntimeError(f"{function.__module__}.{function.__qualname__} no longer uses "
                           f"{unused}: detr_core.model.losses needs updating for this "
                           "transformers version")
    copy = types.FunctionType(code, {**function.__globals__, **replacements}, function.__name__,
                              function.__defaults__, function.__closure__)
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    copy.__doc__ = function.__doc__
    return copy
