"""detr_core.model.losses for every DETR family: GIoU equals transformers' loss, DIoU/CIoU
change the matching and the IoU terms only, one variant per model instance, NaN boxes refused.

Each tiny model (96 px random images, hand-made targets, train mode so that RT-DETR / D-FINE
add their denoising groups) runs once with a stand-in `loss_function` that records the
arguments the model passes; the stock and our loss functions are then called on those same
tensors.
"""

from __future__ import annotations

import copy
import functools
import inspect
import pickle
import types
from collections.abc import Callable
from typing import Any

import pytest
import torch
import transformers.loss.loss_d_fine as loss_d_fine
import transformers.loss.loss_deformable_detr as loss_deformable_detr
import transformers.loss.loss_for_object_detection as loss_for_object_detection
import transformers.loss.loss_rt_detr as loss_rt_detr
from torchvision import ops
from transformers import AutoConfig, AutoModelForObjectDetection, ResNetConfig

from detr_core.model.families import FAMILY_NAMES, tiny_config
from detr_core.model.losses import (
    FAMILY_LOSSES,
    DetrIouLoss,
    DivergedTrainingError,
    IouDeformableDetrHungarianMatcher,
    IouDFineLoss,
    IouHungarianMatcher,
    IouLoss,
    IouRTDetrHungarianMatcher,
    cxcywh_to_xyxy,
    iou_loss_function,
)

# DAB-DETR is not one of detr_core's families (yet) but its loss is Deformable DETR's
MODEL_TYPES = [*FAMILY_NAMES, "dab-detr"]
RT_FAMILIES = ("rt_detr", "rt_detr_v2", "d_fine")  # the criterion weights each term itself
ELEMENTWISE = {"giou": ops.generalized_box_iou_loss, "diou": ops.distance_box_iou_loss,
               "ciou": ops.complete_box_iou_loss}
#: the criterion class each upstream function instantiates
STOCK_CRITERION = {"ForObjectDetectionLoss": "ImageLoss",
                   "DeformableDetrForObjectDetectionLoss": "DeformableDetrImageLoss",
                   "RTDetrForObjectDetectionLoss": "RTDetrLoss",
                   "DFineForObjectDetectionLoss": "DFineLoss"}


def tiny_model(model_type: str, seed: int = 0) -> Any:
    """A tiny random model of `model_type` with 3 labels, in train mode."""
    if model_type == "dab-detr":
        backbone = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128],
                                depths=[1, 1, 1, 1], layer_type="basic", out_features=["stage3"])
        config = AutoConfig.for_model(
            "dab-detr", backbone_config=backbone, use_timm_backbone=False,
            use_pretrained_backbone=False, hidden_size=64, encoder_layers=1, decoder_layers=3,
            encoder_ffn_dim=128, decoder_ffn_dim=128, encoder_attention_heads=4,
            decoder_attention_heads=4, num_queries=10, num_labels=3, auxiliary_loss=True)
    else:
        config = tiny_config(model_type, num_labels=3)
    torch.manual_seed(seed)
    return AutoModelForObjectDetection.from_config(config).train()


def make_labels() -> list[dict[str, torch.Tensor]]:
    """Three images: two objects, none, three (one small, two overlapping)."""
    def image(classes: list[int], boxes: list[list[float]]) -> dict[str, torch.Tensor]:
        return {"class_labels": torch.tensor(classes, dtype=torch.int64),
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)}

    return [image([0, 2], [[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]]),
            image([], []),
            image([1, 0, 1], [[0.5, 0.5, 0.4, 0.3], [0.2, 0.8, 0.1, 0.08],
                              [0.6, 0.55, 0.35, 0.3]])]


def record_call(model: Any, pixel_values: torch.Tensor, labels: list[dict]) -> tuple:
    """Run `model` with `labels`; the (args, kwargs) it passed to its `loss_function`."""
    stock = model.loss_function
    calls: list[tuple] = []

    def recorder(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return stock(*args, **kwargs)

    model.loss_function = recorder
    try:
        model(pixel_values=pixel_values, labels=labels)
    finally:
        model.loss_function = stock
    (call,) = calls
    return call


BOX_ARGUMENTS = ("pred_boxes", "outputs_coord", "enc_topk_bboxes")


@functools.cache
def case(model_type: str, spread: bool = False) -> tuple[tuple, dict, Callable]:
    """(args, kwargs) a tiny `model_type` model passes to its loss, and its stock function.

    An untrained DETR / Deformable / DAB-DETR predicts nearly the same box for every query, so
    the class cost alone decides the matching; `spread` adds fixed noise to every predicted box
    (decoder layers and encoder proposals) so that the IoU cost matters, as it does in training.
    """
    if spread:
        args, kwargs, stock = case(model_type)
        names = list(inspect.signature(stock).parameters)
        # seed and scale chosen so that DIoU matches differently from GIoU in every family
        # (test_these_inputs_do_match_differently_under_diou)
        generator = torch.Generator().manual_seed(4)

        def noisy(boxes: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(boxes.shape, generator=generator, dtype=boxes.dtype)
            return (boxes.detach() + 0.15 * noise).clamp(0.02, 0.98)

        args = tuple(noisy(a) if name in BOX_ARGUMENTS else a
                     for name, a in zip(names, args, strict=False))
        kwargs = {k: noisy(v) if k in BOX_ARGUMENTS else v for k, v in kwargs.items()}
        return args, kwargs, stock
    model = tiny_model(model_type)
    torch.manual_seed(1)
    pixel_values = torch.rand(3, 3, 96, 96)
    args, kwargs = record_call(model, pixel_values, make_labels())
    return args, kwargs, model.loss_function


def renamed(loss_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.replace("loss_giou", "loss_iou"): v for k, v in loss_dict.items()}


def expected_terms(model_type: str, config: Any) -> set[str]:
    """The IoU terms each family must report: main, auxiliary, encoder and denoising."""
    layers = config.decoder_layers
    if model_type in RT_FAMILIES:  # aux_<last> is the encoder's top-k proposals
        return {"loss_iou", *(f"loss_iou_aux_{i}" for i in range(layers)),
                *(f"loss_iou_dn_{i}" for i in range(layers))}
    return {"loss_iou", *(f"loss_iou_{i}" for i in range(layers - 1))}


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_table_matches_what_transformers_assigns(model_type: str) -> None:
    _, _, stock = case(model_type)
    assert FAMILY_LOSSES[model_type][0] is stock
    fn = iou_loss_function(model_type, "diou")
    assert (fn.model_type, fn.iou_loss) == (model_type, "diou")
    assert inspect.signature(fn) == inspect.signature(stock)


@pytest.mark.parametrize("spread", [False, True], ids=["model_boxes", "spread_boxes"])
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_giou_equals_transformers_loss(model_type: str, spread: bool) -> None:
    """Every term (auxiliary, encoder, denoising), renamed, and the total, to 1e-5."""
    args, kwargs, stock = case(model_type, spread)
    ref_loss, ref_dict, ref_aux = stock(*args, **kwargs)
    loss, loss_dict, aux = iou_loss_function(model_type, "giou")(*args, **kwargs)
    assert list(loss_dict) == list(renamed(ref_dict))
    assert expected_terms(model_type, args[4]) <= set(loss_dict)
    assert not any(k.startswith("loss_giou") for k in loss_dict)
    for key, value in renamed(ref_dict).items():
        torch.testing.assert_close(loss_dict[key], value, atol=1e-5, rtol=1e-5, msg=key)
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    assert len(aux) == len(ref_aux)
    for ours, theirs in zip(aux, ref_aux, strict=True):
        assert torch.equal(ours["pred_boxes"], theirs["pred_boxes"])


def our_matcher(variant: str, stock: torch.nn.Module, config: Any) -> torch.nn.Module:
    if isinstance(stock, loss_rt_detr.RTDetrHungarianMatcher):
        return IouRTDetrHungarianMatcher(variant, config)
    cls = (IouDeformableDetrHungarianMatcher
           if isinstance(stock, loss_deformable_detr.DeformableDetrHungarianMatcher)
           else IouHungarianMatcher)
    return cls(variant, stock.class_cost, stock.bbox_cost, stock.giou_cost)


def stock_loss_with_matching_of(variant: str, args: tuple, kwargs: dict,
                                stock: Callable) -> tuple[Any, dict, list[tuple]]:
    """Transformers' loss, untouched but for its matcher, which is ours for `variant`; also
    every `loss_boxes` call it made: (predicted boxes, indices, num_boxes), in loss_dict order.
    """
    name = STOCK_CRITERION[stock.__name__]
    calls: list[tuple] = []

    class Recording(stock.__globals__[name]):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.matcher = our_matcher(variant, self.matcher, args[4])

        def loss_boxes(self, outputs: dict, targets: list, indices: list,
                       num_boxes: float) -> dict:
            calls.append((outputs["pred_boxes"], indices, num_boxes))
            return super().loss_boxes(outputs, targets, indices, num_boxes)

    reference = types.FunctionType(stock.__code__, {**stock.__globals__, name: Recording},
                                   stock.__name__, stock.__defaults__)
    loss, loss_dict, _ = reference(*args, **kwargs)
    return loss, loss_dict, calls


@pytest.mark.parametrize("variant", ["diou", "ciou"])
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_diou_ciou_change_the_iou_terms_only(model_type: str, variant: str) -> None:
    """Against transformers' loss computed with the same (variant) matching: every other term
    equal (RT-DETR's varifocal and D-FINE's FGL / DDF terms, which use plain IoU, included);
    each IoU term is torchvision's loss over that call's matched pairs / num_boxes
    (times `weight_loss_giou` where the criterion weights); the total differs by exactly the
    weighted IoU terms."""
    args, kwargs, stock = case(model_type, spread=True)
    config, labels = args[4], args[1]
    ref_loss, ref_dict, calls = stock_loss_with_matching_of(variant, args, kwargs, stock)
    loss, loss_dict, _ = iou_loss_function(model_type, variant)(*args, **kwargs)
    assert list(loss_dict) == list(renamed(ref_dict))

    iou_keys = [k for k in ref_dict if k.startswith("loss_giou")]
    assert len(iou_keys) == len(calls) and expected_terms(model_type, config) <= set(
        renamed({k: None for k in iou_keys}))
    for key, value in ref_dict.items():
        if key not in iou_keys:
            torch.testing.assert_close(loss_dict[key], value, atol=1e-5, rtol=1e-5, msg=key)

    weight = config.weight_loss_giou if model_type in RT_FAMILIES else 1.0
    total_weight = 1.0 if model_type in RT_FAMILIES else config.giou_loss_coefficient
    shift = 0.0
    for key, (pred_boxes, indices, num_boxes) in zip(iou_keys, calls, strict=True):
        src = torch.cat([pred_boxes[b][i] for b, (i, _) in enumerate(indices)])
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(labels, indices, strict=True)])
        assert len(src) == len(tgt) > 0
        expected = weight * ELEMENTWISE[variant](cxcywh_to_xyxy(src), cxcywh_to_xyxy(tgt),
                                                 reduction="sum") / num_boxes
        ours, giou = loss_dict[key.replace("loss_giou", "loss_iou")], ref_dict[key]
        torch.testing.assert_close(ours, expected, msg=key)
        assert not torch.isclose(ours, giou), key  # the reference's GIoU of the same pairs
        shift = shift + total_weight * (ours - giou)
    torch.testing.assert_close(loss, ref_loss + shift, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_these_inputs_do_match_differently_under_diou(model_type: str) -> None:
    """The premise that makes the previous test meaningful: on these inputs the DIoU matching
    differs from GIoU's somewhere, so a loss still matching by GIoU would fail it."""
    args, kwargs, stock = case(model_type, spread=True)
    _, _, giou_calls = stock_loss_with_matching_of("giou", args, kwargs, stock)
    _, _, diou_calls = stock_loss_with_matching_of("diou", args, kwargs, stock)
    differs = [any(not torch.equal(a, b) for (a, _), (b, _) in zip(g[1], d[1], strict=True))
               for g, d in zip(giou_calls, diou_calls, strict=True)]
    assert any(differs)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_ciou_loss_is_differentiable(model_type: str) -> None:
    args, kwargs, _ = case(model_type, spread=True)
    pred_boxes = args[3].clone().requires_grad_(True)
    loss, _, _ = iou_loss_function(model_type, "ciou")(*args[:3], pred_boxes, *args[4:],
                                                          **kwargs)
    loss.backward()
    assert pred_boxes.grad is not None and torch.isfinite(pred_boxes.grad).all()
    assert pred_boxes.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# the matchers on a hand-made case

#: One object far from both candidates 0 and 1, which neither overlaps: GIoU favours query 0
#: (its enclosing box wastes less area), DIoU/CIoU query 1 (centre closer relative to the
#: enclosing diagonal); their L1 distances (0.59 / 0.60) are almost equal. A second object
#: sits exactly on query 2, so the assignment is a real two-object one.
TARGETS_XYXY = torch.tensor([[0.40, 0.40, 0.60, 0.60], [0.05, 0.05, 0.15, 0.15]])
QUERIES_XYXY = torch.tensor([[0.43, 0.83, 0.67, 0.89], [0.69, 0.14, 0.80, 0.35],
                             [0.05, 0.05, 0.15, 0.15]])


def matcher_case() -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    def to_cxcywh(xyxy: torch.Tensor) -> torch.Tensor:
        return ops.box_convert(xyxy, "xyxy", "cxcywh")

    outputs = {"logits": torch.zeros(1, 3, 3), "pred_boxes": to_cxcywh(QUERIES_XYXY)[None]}
    targets = [{"class_labels": torch.tensor([0, 1]), "boxes": to_cxcywh(TARGETS_XYXY)}]
    return outputs, targets


def test_the_hand_made_case_premise() -> None:
    giou = ops.generalized_box_iou(QUERIES_XYXY[:2], TARGETS_XYXY[:1])[:, 0]
    diou = ops.distance_box_iou(QUERIES_XYXY[:2], TARGETS_XYXY[:1])[:, 0]
    ciou = ops.complete_box_iou(QUERIES_XYXY[:2], TARGETS_XYXY[:1])[:, 0]
    assert giou[0] > giou[1] and diou[1] > diou[0] and ciou[1] > ciou[0]


def assigned(matcher: torch.nn.Module) -> dict[int, int]:
    """target -> query the matcher assigns on the hand-made case."""
    ((queries, targets),) = matcher(*matcher_case())
    return dict(zip(targets.tolist(), queries.tolist(), strict=True))


MATCHERS: dict[str, Callable[[str, Any], torch.nn.Module]] = {
    # model_type: (variant, config) -> our matcher, with the family's default cost weights
    "detr": lambda v, c: IouHungarianMatcher(v, c.class_cost, c.bbox_cost, c.giou_cost),
    "deformable_detr": lambda v, c: IouDeformableDetrHungarianMatcher(
        v, c.class_cost, c.bbox_cost, c.giou_cost),
    "rt_detr": IouRTDetrHungarianMatcher,
    "d_fine": lambda v, c: IouDFineLoss(v, c).matcher,  # D-FINE's criterion builds RT-DETR's
}
STOCK_MATCHERS: dict[str, Callable[[Any], torch.nn.Module]] = {
    "detr": lambda c: loss_for_object_detection.HungarianMatcher(c.class_cost, c.bbox_cost,
                                                                 c.giou_cost),
    "deformable_detr": lambda c: loss_deformable_detr.DeformableDetrHungarianMatcher(
        c.class_cost, c.bbox_cost, c.giou_cost),
    "rt_detr": loss_rt_detr.RTDetrHungarianMatcher,
    "d_fine": lambda c: loss_d_fine.DFineLoss(c).matcher,
}


@pytest.mark.parametrize("model_type", list(MATCHERS))
def test_matching_differs_between_giou_and_diou(model_type: str) -> None:
    config = tiny_config(model_type, num_labels=3)
    chosen = {}
    for variant in ("giou", "diou", "ciou"):
        matcher = MATCHERS[model_type](variant, config)
        assert matcher.iou_loss == variant
        chosen[variant] = assigned(matcher)
    assert chosen == {"giou": {0: 0, 1: 2}, "diou": {0: 1, 1: 2}, "ciou": {0: 1, 1: 2}}
    assert assigned(STOCK_MATCHERS[model_type](config)) == chosen["giou"]
    if model_type == "d_fine":
        assert isinstance(MATCHERS["d_fine"]("diou", config), IouRTDetrHungarianMatcher)


# ---------------------------------------------------------------------------------------------
# per model instance


def test_two_models_keep_their_own_variant() -> None:
    """A with DIoU and B with CIoU (same weights, same inputs, same denoising draw) in one
    process: each reports and computes its own; transformers' classes and a third model's loss
    are untouched."""
    model_type = "rt_detr"
    model_a, model_b, stock_model = (tiny_model(model_type) for _ in range(3))
    stock = stock_model.loss_function
    torch.manual_seed(2)
    pixel_values, labels = torch.rand(3, 3, 96, 96), make_labels()

    def forward(model: Any) -> Any:
        torch.manual_seed(3)  # the denoising queries are drawn at random
        return model(pixel_values=pixel_values, labels=labels)

    torch.manual_seed(3)
    args, kwargs = record_call(stock_model, pixel_values, labels)
    model_a.loss_function = iou_loss_function(model_type, "diou")
    model_b.loss_function = iou_loss_function(model_type, "ciou")
    out_a, out_b = forward(model_a), forward(model_b)
    assert model_a.loss_function.iou_loss == "diou"
    assert model_b.loss_function.iou_loss == "ciou"
    for out, variant in ((out_a, "diou"), (out_b, "ciou")):
        fresh_loss, fresh_dict, _ = iou_loss_function(model_type, variant)(*args, **kwargs)
        torch.testing.assert_close(out.loss, fresh_loss, atol=1e-5, rtol=0)
        for key, value in fresh_dict.items():
            torch.testing.assert_close(out.loss_dict[key], value, atol=1e-6, rtol=0, msg=key)
    assert abs(out_a.loss_dict["loss_iou_dn_0"] - out_b.loss_dict["loss_iou_dn_0"]) > 1e-3
    torch.testing.assert_close(forward(model_a).loss, out_a.loss, atol=0, rtol=0)

    assert tiny_model(model_type).loss_function is stock is FAMILY_LOSSES[model_type][0]
    assert loss_rt_detr.RTDetrLoss.__module__ == loss_rt_detr.__name__
    assert loss_rt_detr.RTDetrForObjectDetectionLoss.__globals__["RTDetrLoss"] is (
        loss_rt_detr.RTDetrLoss)
    # the variant travels with the model (Ray pickles trainables, HF deep-copies models)
    assert copy.deepcopy(model_a).loss_function.iou_loss == "diou"
    restored = pickle.loads(pickle.dumps(model_b.loss_function))
    assert (restored.model_type, restored.iou_loss) == (model_type, "ciou")


def test_detr_keeps_its_own_class() -> None:
    fn = iou_loss_function("detr", "ciou")
    assert isinstance(fn, DetrIouLoss) and isinstance(fn, IouLoss)
    assert (fn.model_type, fn.iou_loss) == ("detr", "ciou")
    assert not isinstance(iou_loss_function("d_fine", "ciou"), DetrIouLoss)


def test_unknown_variant_and_model_type_rejected() -> None:
    with pytest.raises(ValueError, match=r"one of \['ciou', 'diou', 'giou'\], got 'xiou'"):
        iou_loss_function("rt_detr", "xiou")
    with pytest.raises(ValueError, match=r"model_type 'yolos'.*supported: detr, "):
        iou_loss_function("yolos", "giou")


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_boxes_raise_diverged(model_type: str, bad: float) -> None:
    args, kwargs, _ = case(model_type)
    pred_boxes = args[3].detach().clone()
    pred_boxes[0, 1, 2] = bad
    fn = iou_loss_function(model_type, "diou")
    with pytest.raises(DivergedTrainingError, match="diverged"):
        fn(*args[:3], pred_boxes, *args[4:], **kwargs)
    names = list(inspect.signature(fn).parameters)
    by_name = {**dict(zip(names, args, strict=False)), "pred_boxes": pred_boxes, **kwargs}
    with pytest.raises(DivergedTrainingError):  # every argument passed by keyword
        fn(**by_name)
