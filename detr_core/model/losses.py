"""Box geometry helpers on top of `torchvision.ops`: format changes and pixel mapping.

DETR predicts normalised (cx, cy, w, h) on the padded canvas the image processor made; the
diary's numbers (IoU, centre error in pixels) and COCO mAP need xyxy in *original* pixels.

What every family's IoU-swappable loss shares: the variants, the divergence error, the
matcher cost and the box loss with the chosen IoU term, and the copy of an upstream loss
function that builds our matcher / criterion instead of transformers' own.

The IoU variant appears twice in a DETR-family loss and a DIoU/CIoU run must change both: in
the Hungarian matcher's cost (which prediction is paired with which ground truth) and in the box
loss of the matched pairs. Both come from `torchvision.ops` (pairwise `*_box_iou` for the cost,
elementwise `*_box_iou_loss` for the loss). Plain IoU used elsewhere (RT-DETR's varifocal soft
target, D-FINE's FGL/DDF weights) is not a GIoU term and stays as upstream has it.

DETR (`transformers.loss.loss_for_object_detection`): softmax class cost, cross-entropy
with a "no object" class.

Conditional / Deformable / DAB-DETR (`transformers.loss.loss_deformable_detr`): sigmoid
focal class cost (alpha 0.25, gamma 2, fixed upstream) and focal classification loss; the
criterion inherits DETR's `loss_boxes`, which is where the IoU term is swapped.

RT-DETR and RT-DETRv2 (`transformers.loss.loss_rt_detr`): the matcher reads its weights
from the config (`matcher_*`), the criterion weights each term itself (`weight_loss_*`) and adds
the encoder proposals (`_aux_<last>`) and denoising groups (`_dn_<i>`). The varifocal loss's
soft target is the matched pairs' plain IoU, not a GIoU term: it stays as upstream has it.

D-FINE (`transformers.loss.loss_d_fine`): RT-DETR's criterion and matcher plus the
fine-grained localisation (FGL) and distillation (DDF) terms of `loss_local`, which weight by
the matched pairs' plain IoU: not a GIoU term, left as upstream has it.

The `loss_function` of each family with a chosen IoU variant: transformers' own function,
run on a copy whose matcher / criterion classes are ours (`common.with_globals`).
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision import ops
from torchvision.ops import box_convert
from transformers.loss.loss_d_fine import DFineForObjectDetectionLoss, DFineLoss
from transformers.loss.loss_deformable_detr import (
    DeformableDetrForObjectDetectionLoss,
    DeformableDetrHungarianMatcher,
    DeformableDetrImageLoss,
)
from transformers.loss.loss_for_object_detection import (
    ForObjectDetectionLoss,
    HungarianMatcher,
    ImageLoss,
)
from transformers.loss.loss_rt_detr import (
    RTDetrForObjectDetectionLoss,
    RTDetrHungarianMatcher,
    RTDetrLoss,
)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x0, y0, x1, y1), any scale."""
    return box_convert(boxes, in_fmt="cxcywh", out_fmt="xyxy")


def to_original_pixels(
    normalised_cxcywh: torch.Tensor,
    canvas_size: torch.Tensor,
    resized_size: torch.Tensor,
    original_size: torch.Tensor,
) -> torch.Tensor:
    """Normalised canvas boxes -> xyxy pixels of the original image.

    `canvas_size` is the padded (h, w) the boxes are normalised by, `resized_size` the (h, w)
    the image occupies in it, `original_size` the (h, w) of the file on disk.
    """
    canvas_h, canvas_w = (float(v) for v in canvas_size)
    scale_y = float(original_size[0]) / float(resized_size[0])
    scale_x = float(original_size[1]) / float(resized_size[1])
    factor = normalised_cxcywh.new_tensor(
        [canvas_w * scale_x, canvas_h * scale_y, canvas_w * scale_x, canvas_h * scale_y]
    )
    return cxcywh_to_xyxy(normalised_cxcywh.float()) * factor


def box_centres(xyxy: torch.Tensor) -> torch.Tensor:
    """Centre (x, y) of each xyxy box."""
    return box_convert(xyxy, in_fmt="xyxy", out_fmt="cxcywh")[..., :2]


PairwiseIou = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
IouLossFn = Callable[..., torch.Tensor]

IOU_LOSSES: dict[str, tuple[PairwiseIou, IouLossFn]] = {
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


def check_variant(iou_loss: str) -> None:
    """Refuse an unknown variant, listing the valid ones."""
    if iou_loss not in IOU_LOSSES:
        raise ValueError(f"iou_loss must be one of {sorted(IOU_LOSSES)}, got {iou_loss!r}")


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

    def __init__(self, iou_loss: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.iou_loss = iou_loss
        self.pairwise_iou = IOU_LOSSES[iou_loss][0]

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

    def __init__(self, iou_loss: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.iou_loss = iou_loss
        self.box_iou_loss = IOU_LOSSES[iou_loss][1]

    def loss_boxes(self, outputs: dict, targets: list[dict], indices: list,
                   num_boxes: float) -> dict[str, torch.Tensor]:
        """L1 and IoU loss over the matched pairs, each summed and divided by `num_boxes`."""
        if "pred_boxes" not in outputs:
            raise KeyError("No predicted boxes found in outputs")
        idx = self._get_source_permutation_idx(indices)
        source = outputs["pred_boxes"][idx]
        target = torch.cat([t["boxes"][i] for t, (_, i) in zip(targets, indices, strict=True)])
        l1 = nn.functional.l1_loss(source, target, reduction="none")
        iou = self.box_iou_loss(cxcywh_to_xyxy(source), cxcywh_to_xyxy(target), reduction="sum")
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


class IouHungarianMatcher(IouCostMixin, HungarianMatcher):
    """DETR's matcher with the IoU cost taken from the chosen torchvision variant.

    `IouHungarianMatcher(iou_loss, class_cost, bbox_cost, giou_cost)`; `giou_cost` (upstream's
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

    `IouImageLoss(iou_loss, matcher, num_classes, eos_coef, losses)`.
    """


FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


class IouDeformableDetrHungarianMatcher(IouCostMixin, DeformableDetrHungarianMatcher):
    """Deformable DETR's matcher with the chosen IoU cost.

    `IouDeformableDetrHungarianMatcher(iou_loss, class_cost, bbox_cost, giou_cost)`.
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

    `IouDeformableDetrImageLoss(iou_loss, matcher, num_classes, focal_alpha, losses)`.
    """


class IouRTDetrHungarianMatcher(IouCostMixin, RTDetrHungarianMatcher):
    """RT-DETR's matcher (also D-FINE's) with the chosen IoU cost.

    `IouRTDetrHungarianMatcher(iou_loss, config)`; `config.matcher_giou_cost` weights the
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

    `IouRTDetrLoss(iou_loss, config)`.
    """

    def __init__(self, iou_loss: str, config: Any) -> None:
        super().__init__(iou_loss, config)
        self.matcher = IouRTDetrHungarianMatcher(iou_loss, config)


class IouDFineLoss(IouBoxLossMixin, DFineLoss):
    """D-FINE's criterion with the chosen IoU in its (RT-DETR) matcher and its box loss.

    `IouDFineLoss(iou_loss, config)`.
    """

    def __init__(self, iou_loss: str, config: Any) -> None:
        super().__init__(iou_loss, config)
        self.matcher = IouRTDetrHungarianMatcher(iou_loss, config)


_DETR = (ForObjectDetectionLoss,
         {"HungarianMatcher": IouHungarianMatcher, "ImageLoss": IouImageLoss})
_DEFORMABLE = (DeformableDetrForObjectDetectionLoss,
               {"DeformableDetrHungarianMatcher": IouDeformableDetrHungarianMatcher,
                "DeformableDetrImageLoss": IouDeformableDetrImageLoss})
_RT_DETR = (RTDetrForObjectDetectionLoss, {"RTDetrLoss": IouRTDetrLoss})

#: `config.model_type` -> (transformers' loss function for it, as `LOSS_MAPPING` assigns it;
#: {name of a class that function instantiates: our subclass, which takes the variant first}).
FAMILY_LOSSES: dict[str, tuple[Callable[..., Any], dict[str, type]]] = {
    "detr": _DETR,
    "conditional_detr": _DEFORMABLE,
    "deformable_detr": _DEFORMABLE,
    "dab-detr": _DEFORMABLE,
    "rt_detr": _RT_DETR,
    "rt_detr_v2": _RT_DETR,
    "d_fine": (DFineForObjectDetectionLoss, {"DFineLoss": IouDFineLoss}),
}

LossOutput = tuple[torch.Tensor, dict[str, torch.Tensor], Any]


@functools.cache
def _variant_function(model_type: str, iou_loss: str) -> Callable[..., LossOutput]:
    """Upstream's function for `model_type`, building our classes for `iou_loss` (one copy
    per pair, made on first use; module-level so that `IouLoss` stays picklable)."""
    upstream, classes = FAMILY_LOSSES[model_type]
    return with_globals(upstream, {name: functools.partial(cls, iou_loss)
                                   for name, cls in classes.items()})


class IouLoss:
    """A `loss_function` for a model of `model_type` with a selectable IoU variant.

    Called as the model calls transformers' function for its family (same arguments, same
    `(loss, loss_dict, auxiliary_outputs)`), it checks the predicted boxes are finite, runs that
    function with our matcher and criterion, and renames every `loss_giou*` term `loss_iou*`.
    The total is upstream's: the IoU terms weighted by `giou_loss_coefficient` (DETR,
    Conditional / Deformable / DAB-DETR) or `weight_loss_giou` (RT-DETR, D-FINE), so with
    `giou` it equals transformers' loss. State is the two names only: set one per model
    instance (`model.loss_function = ...`); it pickles and deep-copies with the model.
    """

    def __init__(self, model_type: str, iou_loss: str) -> None:
        if model_type not in FAMILY_LOSSES:
            raise ValueError(f"model_type {model_type!r} has no IoU-swappable loss "
                             f"(supported: {', '.join(FAMILY_LOSSES)})")
        check_variant(iou_loss)
        self.model_type = model_type
        self.iou_loss = iou_loss
        #: upstream's signature, for `inspect.signature(model.loss_function)`
        self.__signature__ = inspect.signature(FAMILY_LOSSES[model_type][0])

    def __call__(self, *args: Any, **kwargs: Any) -> LossOutput:
        check_finite(self.__signature__.bind(*args, **kwargs).arguments["pred_boxes"])
        loss, loss_dict, auxiliary_outputs = _variant_function(
            self.model_type, self.iou_loss)(*args, **kwargs)
        return loss, rename_iou_terms(loss_dict), auxiliary_outputs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_type!r}, {self.iou_loss!r})"


class DetrIouLoss(IouLoss):
    """`IouLoss` of `DetrForObjectDetection` (`ForObjectDetectionLoss`'s arguments)."""

    def __init__(self, iou_loss: str) -> None:
        super().__init__("detr", iou_loss)

    def __repr__(self) -> str:
        return f"DetrIouLoss({self.iou_loss!r})"


def iou_loss_function(model_type: str, iou_loss: str) -> IouLoss:
    """The `loss_function` to set on a model of `model_type` (its `config.model_type`) for
    `iou_loss` (one of `IOU_LOSSES`): `model.loss_function = iou_loss_function(...)`.

    Raises ValueError for an unsupported `model_type` or an unknown variant.
    """
    if model_type == "detr":
        return DetrIouLoss(iou_loss)
    return IouLoss(model_type, iou_loss)
