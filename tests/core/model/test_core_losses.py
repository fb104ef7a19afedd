"""detr_core.model.losses: GIoU equals transformers' DETR loss; DIoU/CIoU change matching and
loss."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torchvision import ops
from transformers import DetrConfig
from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

from detr_core.model.families import _tiny_backbone
from detr_core.model.losses import (
    IOU_LOSSES,
    DetrIouLoss,
    DivergedTrainingError,
    IouHungarianMatcher,
    cxcywh_to_xyxy,
)

NUM_LABELS = 3
DECODER_LAYERS = 3
QUERIES = 6


@pytest.fixture(scope="module")
def config() -> DetrConfig:
    """A DETR config with auxiliary losses and non-default cost/coefficient weights."""
    return DetrConfig(
        backbone_config=_tiny_backbone(multi_scale=False), use_timm_backbone=False,
        use_pretrained_backbone=False,
        d_model=32, num_labels=NUM_LABELS, decoder_layers=DECODER_LAYERS, auxiliary_loss=True,
        num_queries=QUERIES, class_cost=2, bbox_cost=5, giou_cost=3, bbox_loss_coefficient=4,
        giou_loss_coefficient=2, eos_coefficient=0.2,
    )


def random_boxes(generator: torch.Generator, *shape: int) -> torch.Tensor:
    """Valid normalised (cx, cy, w, h): centres in [0.2, 0.8], sizes in [0.05, 0.35]."""
    centres = torch.rand(*shape, 2, generator=generator) * 0.6 + 0.2
    sizes = torch.rand(*shape, 2, generator=generator) * 0.3 + 0.05
    return torch.cat([centres, sizes], dim=-1)


def make_case(seed: int = 0) -> dict[str, Any]:
    """Random decoder outputs of every layer (the last is the main output) and targets.

    Image 2 of 3 has no object at all.
    """
    g = torch.Generator().manual_seed(seed)
    batch = 3
    outputs_class = torch.randn(DECODER_LAYERS, batch, QUERIES, NUM_LABELS + 1, generator=g)
    outputs_coord = random_boxes(g, DECODER_LAYERS, batch, QUERIES)
    counts = [3, 0, 2]
    labels = [
        {"class_labels": torch.randint(0, NUM_LABELS, (n,), generator=g),
         "boxes": random_boxes(g, n)}
        for n in counts
    ]
    return {"logits": outputs_class[-1], "pred_boxes": outputs_coord[-1],
            "outputs_class": outputs_class, "outputs_coord": outputs_coord, "labels": labels}


def call(loss_fn: Any, case: dict[str, Any], config: DetrConfig) -> tuple:
    return loss_fn(case["logits"], case["labels"], torch.device("cpu"), case["pred_boxes"],
                   config, case["outputs_class"], case["outputs_coord"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_giou_equals_transformers_loss(config: DetrConfig, seed: int) -> None:
    """Same matching, same terms (`loss_giou` reported as `loss_iou`), same weighted total."""
    case = make_case(seed)
    ref_loss, ref_dict, ref_aux = call(ForObjectDetectionLoss, case, config)
    loss, loss_dict, aux = call(DetrIouLoss("giou"), case, config)
    renamed = {k.replace("loss_giou", "loss_iou"): v for k, v in ref_dict.items()}
    assert set(loss_dict) == set(renamed)
    for suffix in ("", "_0", "_1"):  # main output and both auxiliary decoder layers
        for term in ("loss_ce", "loss_bbox", "loss_iou", "cardinality_error"):
            assert term + suffix in loss_dict
    for key, value in renamed.items():
        torch.testing.assert_close(loss_dict[key], value, atol=1e-5, rtol=1e-5, msg=key)
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    assert len(aux) == len(ref_aux) == DECODER_LAYERS - 1
    # the total really is the weighted sum with the config's coefficients
    weights = {"loss_ce": 1, "loss_bbox": 4, "loss_iou": 2}
    expected = sum(loss_dict[t + s] * w for t, w in weights.items() for s in ("", "_0", "_1"))
    torch.testing.assert_close(loss, expected)


def test_loss_is_differentiable(config: DetrConfig) -> None:
    case = make_case(3)
    pred = case["pred_boxes"].clone().requires_grad_(True)
    case["pred_boxes"] = pred
    loss, _, _ = call(DetrIouLoss("ciou"), case, config)
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("variant", "elementwise"),
    [("diou", ops.distance_box_iou_loss), ("ciou", ops.complete_box_iou_loss)],
)
def test_diou_ciou_loss_on_matched_pairs(config: DetrConfig, variant: str,
                                         elementwise: Any) -> None:
    """`loss_iou` (and its `_0`, `_1` aux terms) is torchvision's loss over the matched pairs."""
    case = make_case(4)
    _, loss_dict, _ = call(DetrIouLoss(variant), case, config)
    matcher = IouHungarianMatcher(variant, config.class_cost, config.bbox_cost, config.giou_cost)
    num_boxes = sum(len(t["boxes"]) for t in case["labels"])
    layers = {"": DECODER_LAYERS - 1, "_0": 0, "_1": 1}
    for suffix, layer in layers.items():
        outputs = {"logits": case["outputs_class"][layer],
                   "pred_boxes": case["outputs_coord"][layer]}
        indices = matcher(outputs, case["labels"])
        src = torch.cat([outputs["pred_boxes"][b][i] for b, (i, _) in enumerate(indices)])
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(case["labels"], indices, strict=True)])
        assert len(src) == num_boxes
        expected_iou = elementwise(cxcywh_to_xyxy(src), cxcywh_to_xyxy(tgt),
                                   reduction="sum") / num_boxes
        expected_l1 = (src - tgt).abs().sum() / num_boxes
        torch.testing.assert_close(loss_dict["loss_iou" + suffix], expected_iou)
        torch.testing.assert_close(loss_dict["loss_bbox" + suffix], expected_l1)
        assert "loss_giou" + suffix not in loss_dict


def test_matcher_uses_the_pairwise_variant() -> None:
    for variant, (pairwise, _) in IOU_LOSSES.items():
        matcher = IouHungarianMatcher(variant, 1, 1, 1)
        assert matcher.pairwise_iou is pairwise
    assert IOU_LOSSES["diou"][0] is ops.distance_box_iou
    assert IOU_LOSSES["ciou"][0] is ops.complete_box_iou


def test_matching_differs_between_giou_and_diou() -> None:
    """One target, two candidate queries, IoU cost only: GIoU prefers query 0, DIoU/CIoU 1.

    Neither query overlaps the target; GIoU favours the one whose enclosing box wastes less
    area, DIoU/CIoU the one whose centre is closer relative to the enclosing diagonal.
    """
    target_xyxy = torch.tensor([[0.40, 0.40, 0.60, 0.60]])
    queries_xyxy = torch.tensor([[0.43, 0.83, 0.67, 0.89], [0.69, 0.14, 0.80, 0.35]])
    giou = ops.generalized_box_iou(queries_xyxy, target_xyxy)[:, 0]
    diou = ops.distance_box_iou(queries_xyxy, target_xyxy)[:, 0]
    assert giou[0] > giou[1] and diou[1] > diou[0]  # the premise of the test

    to_cxcywh = ops.box_convert
    outputs = {"logits": torch.zeros(1, 2, 3),
               "pred_boxes": to_cxcywh(queries_xyxy, "xyxy", "cxcywh")[None]}
    targets = [{"class_labels": torch.tensor([0]),
                "boxes": to_cxcywh(target_xyxy, "xyxy", "cxcywh")}]
    chosen = {}
    for variant in ("giou", "diou", "ciou"):
        (query, target), = IouHungarianMatcher(variant, 0, 0, 1)(outputs, targets)
        assert target.tolist() == [0]
        chosen[variant] = query.tolist()
    assert chosen == {"giou": [0], "diou": [1], "ciou": [1]}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_boxes_raise_diverged(config: DetrConfig, bad: float) -> None:
    case = make_case(5)
    case["pred_boxes"] = case["pred_boxes"].clone()
    case["pred_boxes"][0, 1, 2] = bad
    with pytest.raises(DivergedTrainingError, match="diverged"):
        call(DetrIouLoss("diou"), case, config)
    assert issubclass(DivergedTrainingError, FloatingPointError)


def test_unknown_variant_rejected() -> None:
    with pytest.raises(ValueError, match="iou_loss must be one of"):
        DetrIouLoss("xiou")


def test_installed_on_model_forward(config: DetrConfig) -> None:
    """`model.loss_function` is what DetrForObjectDetection calls with `labels`."""
    from transformers import DetrForObjectDetection

    torch.manual_seed(0)
    model = DetrForObjectDetection(config).eval()
    model.loss_function = DetrIouLoss("ciou")
    labels = make_case(6)["labels"]
    out = model(pixel_values=torch.rand(3, 3, 64, 64), labels=labels)
    assert "loss_iou" in out.loss_dict and "loss_giou" not in out.loss_dict
    assert torch.isfinite(out.loss)
