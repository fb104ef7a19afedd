"""The `loss_function` of each family with a chosen IoU variant: transformers' own function,
run on a copy whose matcher / criterion classes are ours (`common.with_globals`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch
from transformers.loss.loss_d_fine import DFineForObjectDetectionLoss
from transformers.loss.loss_deformable_detr import DeformableDetrForObjectDetectionLoss
from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss
from transformers.loss.loss_rt_detr import RTDetrForObjectDetectionLoss

from detr_core.model.losses.common import (
    check_finite,
    check_variant,
    rename_iou_terms,
    with_globals,
)
from detr_core.model.losses.d_fine import IouDFineLoss
from detr_core.model.losses.deformable import (
    IouDeformableDetrHungarianMatcher,
    IouDeformableDetrImageLoss,
)
from detr_core.model.losses.detr import IouHungarianMatcher, IouImageLoss
from detr_core.model.losses.rt_detr import IouRTDetrLoss

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
def _variant_function(model_type: str, iou_variant: str) -> Callable[..., LossOutput]:
    """Upstream's function for `model_type`, building our classes for `iou_variant` (one copy
    per pair, made on first use; module-level so that `IouLoss` stays picklable)."""
    upstream, classes = FAMILY_LOSSES[model_type]
    return with_globals(upstream, {name: functools.partial(cls, iou_variant)
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

    def __init__(self, model_type: str, iou_variant: str) -> None:
        if model_type not in FAMILY_LOSSES:
            raise ValueError(f"model_type {model_type!r} has no IoU-swappable loss "
                             f"(supported: {', '.join(FAMILY_LOSSES)})")
        check_variant(iou_variant)
        self.model_type = model_type
        self.iou_variant = iou_variant
        #: upstream's signature, for `inspect.signature(model.loss_function)`
        self.__signature__ = inspect.signature(FAMILY_LOSSES[model_type][0])

    def __call__(self, *args: Any, **kwargs: Any) -> LossOutput:
        check_finite(self.__signature__.bind(*args, **kwargs).arguments["pred_boxes"])
        loss, loss_dict, auxiliary_outputs = _variant_function(
            self.model_type, self.iou_variant)(*args, **kwargs)
        return loss, rename_iou_terms(loss_dict), auxiliary_outputs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_type!r}, {self.iou_variant!r})"


class DetrIouLoss(IouLoss):
    """`IouLoss` of `DetrForObjectDetection` (`ForObjectDetectionLoss`'s arguments)."""

    def __init__(self, iou_variant: str) -> None:
        super().__init__("detr", iou_variant)

    def __repr__(self) -> str:
        return f"DetrIouLoss({self.iou_variant!r})"


def iou_loss_function(model_type: str, iou_variant: str) -> IouLoss:
    """The `loss_function` to set on a model of `model_type` (its `config.model_type`) for
    `iou_variant` (one of `IOU_VARIANTS`): `model.loss_function = iou_loss_function(...)`.

    Raises ValueError for an unsupported `model_type` or an unknown variant.
    """
    if model_type == "detr":
        return DetrIouLoss(iou_variant)
    return IouLoss(model_type, iou_variant)
