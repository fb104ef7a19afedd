"""Box geometry helpers, and each family's loss with a chosen IoU variant (GIoU, DIoU, CIoU) in
both places it has the GIoU term: the Hungarian matcher's cost and the matched pairs' box loss
(plain IoU elsewhere stays). Upstream's loss functions run with our classes (`with_globals`).
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


def to_original_pixels(normalised_cxcywh: torch.Tensor, canvas_size: torch.Tensor,
                       resized_size: torch.Tensor, original_size: torch.Tensor) -> torch.Tensor:
    """Normalised canvas boxes -> xyxy pixels of the original image; sizes are (h, w)."""
    canvas_h, canvas_w = (float(v) for v in canvas_size)
    scale_y = float(original_size[0]) / float(resized_size[0])
    scale_x = float(original_size[1]) / float(resized_size[1])
    factor = normalised_cxcywh.new_tensor(
        [canvas_w * scale_x, canvas_h * scale_y, canvas_w * scale_x, canvas_h * scale_y])
    return cxcywh_to_xyxy(normalised_cxcywh.float()) * factor


def box_centres(xyxy: torch.Tensor) -> torch.Tensor:
    """Centre (x, y) of each xyxy box."""
    return box_convert(xyxy, in_fmt="xyxy", out_fmt="cxcywh")[..., :2]


#: variant -> (pairwise IoU for the matcher cost, elementwise IoU loss)
IOU_LOSSES: dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = {
    "giou": (ops.generalized_box_iou, ops.generalized_box_iou_loss),
    "diou": (ops.distance_box_iou, ops.distance_box_iou_loss),
    "ciou": (ops.complete_box_iou, ops.complete_box_iou_loss),
}

#: Upstream's name of the IoU term: kept inside the loss (its weights apply), renamed after.
UPSTREAM_TERM = "loss_giou"
TERM = "loss_iou"


class DivergedTrainingError(FloatingPointError):
    """The model produced non-finite boxes: the run diverged (e.g. an absurd learning rate)."""


def _focal_cost(prob: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Upstream's focal class cost of sigmoid probabilities."""
    neg = (1 - alpha) * (prob**gamma) * (-(1 - prob + 1e-8).log())
    pos = alpha * ((1 - prob) ** gamma) * (-(prob + 1e-8).log())
    return pos - neg


class IouCostMixin:
    """A Hungarian matcher (mixed in before an upstream one) whose IoU cost is the variant's,
    weighted by upstream's `giou_cost`; `class_cost_of` is each family's class cost."""

    def __init__(self, iou_loss: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.iou_loss = iou_loss
        self.pairwise_iou = IOU_LOSSES[iou_loss][0]

    @torch.no_grad()
    def forward(self, outputs: dict[str, torch.Tensor],
                targets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Upstream's assignment: L1 + IoU + class cost (non-finite: the largest), per image."""
        from scipy.optimize import linear_sum_assignment

        target_ids = torch.cat([t["class_labels"] for t in targets])
        class_cost = self.class_cost_of(outputs["logits"].flatten(0, 1), target_ids)
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
        return [(torch.as_tensor(i, dtype=torch.int64), torch.as_tensor(j, dtype=torch.int64))
                for i, j in indices]


def box_counts(targets: list[dict], device: torch.device) -> tuple[float, float] | None:
    """(this rank's box count, the mean count over the ranks of a data-parallel job), each at
    least 1; None outside a process group. Every loss term divides by the mean: the gradients DDP
    averages then weigh each box of the global batch alike. Upstream gets it wrong both ways:
    RT-DETR's and D-FINE's losses divide by the rank's own count, DETR's (and the deformable
    family's) by the mean divided by the number of ranks again (accelerate's `reduce` averages)."""
    rank_count = float(sum(len(t["class_labels"]) for t in targets))
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    total = torch.tensor([rank_count], dtype=torch.float, device=device)
    torch.distributed.all_reduce(total)
    return max(rank_count, 1.0), max(float(total) / torch.distributed.get_world_size(), 1.0)


class IouBoxLossMixin:
    """A criterion (mixed in before an upstream one) whose `loss_boxes` is L1 + the variant's IoU
    loss, returned as upstream's `loss_giou`, and whose box count is shared across ranks."""

    def __init__(self, iou_loss: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.iou_loss = iou_loss
        self.box_iou_loss = IOU_LOSSES[iou_loss][1]
        self.box_counts: tuple[float, float] | None = None

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        self.box_counts = box_counts(targets, outputs["logits"].device)
        return super().forward(outputs, targets)

    def get_loss(self, loss: str, outputs: dict, targets: list[dict], indices: list,
                 num_boxes: float, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Upstream's, divided by the ranks' box count in a data-parallel job (`box_counts`)."""
        if self.box_counts is not None:
            num_boxes = self.shared_num_boxes(num_boxes, self.box_counts)
        return super().get_loss(loss, outputs, targets, indices, num_boxes, **kwargs)

    def shared_num_boxes(self, num_boxes: float, counts: tuple[float, float]) -> float:
        """DETR's (`ImageLoss`) count, upstream's mean / ranks: the mean, as meant."""
        return counts[1]

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
    """A copy of the upstream loss `function` with the classes it instantiates replaced (a name
    it no longer uses is refused rather than silently computing GIoU); transformers untouched."""
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
    """DETR's matcher (softmax class cost): `(iou_loss, class_cost, bbox_cost, giou_cost)`."""

    def class_cost_of(self, logits: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        return -logits.softmax(-1)[:, target_ids]


class IouImageLoss(IouBoxLossMixin, ImageLoss):
    """DETR's criterion: `(iou_loss, matcher, num_classes, eos_coef, losses)`."""


class IouDeformableDetrHungarianMatcher(IouCostMixin, DeformableDetrHungarianMatcher):
    """Deformable DETR's matcher (focal class cost): `(iou_loss, class_cost, ...)`."""

    def class_cost_of(self, logits: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        return _focal_cost(logits.sigmoid()[:, target_ids], 0.25, 2.0)  # fixed upstream


class IouDeformableDetrImageLoss(IouBoxLossMixin, DeformableDetrImageLoss):
    """Deformable DETR's criterion: `(iou_loss, matcher, num_classes, focal_alpha, losses)`."""


class IouRTDetrHungarianMatcher(IouCostMixin, RTDetrHungarianMatcher):
    """RT-DETR's (and D-FINE's) matcher: `(iou_loss, config)`."""

    def class_cost_of(self, logits: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        if self.use_focal_loss:
            return _focal_cost(logits.sigmoid()[:, target_ids], self.alpha, self.gamma)
        return -logits.softmax(-1)[:, target_ids]


class _IouRTDetrCriterion(IouBoxLossMixin):
    """RT-DETR's and D-FINE's criteria take `(iou_loss, config)` and build their own matcher."""

    def __init__(self, iou_loss: str, config: Any) -> None:
        super().__init__(iou_loss, config)
        self.matcher = IouRTDetrHungarianMatcher(iou_loss, config)

    def shared_num_boxes(self, num_boxes: float, counts: tuple[float, float]) -> float:
        """Upstream's count is this rank's (times the denoising groups): scaled to the ranks'."""
        return num_boxes * counts[1] / counts[0]


class IouRTDetrLoss(_IouRTDetrCriterion, RTDetrLoss):
    """RT-DETR's criterion with the variant in its matcher and box loss."""


class IouDFineLoss(_IouRTDetrCriterion, DFineLoss):
    """D-FINE's criterion with the variant in its (RT-DETR) matcher and box loss."""


_DEFORMABLE = (DeformableDetrForObjectDetectionLoss,
               {"DeformableDetrHungarianMatcher": IouDeformableDetrHungarianMatcher,
                "DeformableDetrImageLoss": IouDeformableDetrImageLoss})
_RT_DETR = (RTDetrForObjectDetectionLoss, {"RTDetrLoss": IouRTDetrLoss})

#: `config.model_type` -> (transformers' loss function, {class name it instantiates: ours}).
FAMILY_LOSSES: dict[str, tuple[Callable[..., Any], dict[str, type]]] = {
    "detr": (ForObjectDetectionLoss,
             {"HungarianMatcher": IouHungarianMatcher, "ImageLoss": IouImageLoss}),
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
    """Upstream's function building our classes for `iou_loss` (module-level: `IouLoss` pickles)."""
    upstream, classes = FAMILY_LOSSES[model_type]
    return with_globals(upstream, {name: functools.partial(cls, iou_loss)
                                   for name, cls in classes.items()})


class IouLoss:
    """A model's `loss_function` with a selectable IoU variant (with `giou`, transformers' own):
    refuses non-finite boxes (the matcher's max-cost fallback would hide a diverged run) and
    renames `loss_giou*` terms `loss_iou*`. State is the two names: it pickles with the model."""

    def __init__(self, model_type: str, iou_loss: str) -> None:
        if model_type not in FAMILY_LOSSES:
            raise ValueError(f"model_type {model_type!r} has no IoU-swappable loss "
                             f"(supported: {', '.join(FAMILY_LOSSES)})")
        if iou_loss not in IOU_LOSSES:
            raise ValueError(f"iou_loss must be one of {sorted(IOU_LOSSES)}, got {iou_loss!r}")
        self.model_type = model_type
        self.iou_loss = iou_loss
        #: upstream's signature, for `inspect.signature(model.loss_function)`
        self.__signature__ = inspect.signature(FAMILY_LOSSES[model_type][0])

    def __call__(self, *args: Any, **kwargs: Any) -> LossOutput:
        pred_boxes = self.__signature__.bind(*args, **kwargs).arguments["pred_boxes"]
        if not torch.isfinite(pred_boxes).all():
            raise DivergedTrainingError(
                "predicted boxes are NaN/inf: training diverged (learning rate too high?)")
        loss, loss_dict, auxiliary_outputs = _variant_function(
            self.model_type, self.iou_loss)(*args, **kwargs)
        renamed = {(TERM + key[len(UPSTREAM_TERM):] if key.startswith(UPSTREAM_TERM) else key): v
                   for key, v in loss_dict.items()}
        return loss, renamed, auxiliary_outputs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_type!r}, {self.iou_loss!r})"


class DetrIouLoss(IouLoss):
    """`IouLoss` of `DetrForObjectDetection`."""

    def __init__(self, iou_loss: str) -> None:
        super().__init__("detr", iou_loss)

    def __repr__(self) -> str:
        return f"DetrIouLoss({self.iou_loss!r})"


def iou_loss_function(model_type: str, iou_loss: str) -> IouLoss:
    """The `loss_function` for a model of `model_type` and `iou_loss`; ValueError if unsupported."""
    return DetrIouLoss(iou_loss) if model_type == "detr" else IouLoss(model_type, iou_loss)
