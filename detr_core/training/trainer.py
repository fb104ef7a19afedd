"""The HF `Trainer` as a DETR-family run needs it (the backbone's own learning rate, exact
schedule-free mode switches), and the metrics of its evaluations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from transformers import Trainer

from detr_core.config.metric_names import LOSS_TERMS
from detr_core.evaluation.metrics import decode_predictions, decode_targets, detection_metrics
from detr_core.model.build import backbone_parameters
from detr_core.model.families import Family


def split_backbone_groups(optimizer: torch.optim.Optimizer,
                          backbone: Iterable[torch.nn.Parameter], ratio: float) -> int:
    """Give the `backbone` parameters of each group a group of their own at `ratio` x its rate."""
    if ratio == 1.0:
        return 0
    if optimizer.state:
        raise RuntimeError("the backbone groups must be made before the first step")
    ids = {id(p) for p in backbone}
    added = []
    for group in optimizer.param_groups:
        mine = [p for p in group["params"] if id(p) in ids]
        if not mine:
            continue
        group["params"] = [p for p in group["params"] if id(p) not in ids]
        added.append({**{k: v for k, v in group.items() if k != "params"}, "params": mine,
                      "lr": group["lr"] * ratio})
    for group in added:
        optimizer.add_param_group(group)
    return len(added)


def is_schedule_free(optimizer: Any) -> bool:
    """True for an optimizer with schedule-free `train()` / `eval()` modes."""
    groups = getattr(optimizer, "param_groups", None) or []
    return (all(callable(getattr(optimizer, mode, None)) for mode in ("train", "eval"))
            and bool(groups) and all("train_mode" in group for group in groups))


def exact_mode_switches(optimizer: Any) -> Any:
    """Make a schedule-free `optimizer`'s eval() -> train() round trip restore its training
    weights exactly: in floating point it nudged them (test mAP@.5 at step 375: 0.563 evaluated
    every 25 steps, 0.591 once). Any other optimizer is returned unchanged."""
    if not is_schedule_free(optimizer) or getattr(optimizer, "_exact_mode_switches", False):
        return optimizer
    to_eval, to_train = optimizer.eval, optimizer.train
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []

    def in_train_mode() -> bool:
        return all(group["train_mode"] for group in optimizer.param_groups)

    def eval_mode() -> None:
        if in_train_mode():
            kept[:] = [(p, p.detach().clone()) for group in optimizer.param_groups
                       for p in group["params"]]
        to_eval()

    def train_mode() -> None:
        if in_train_mode() or not kept:  # already training, or eval() came from a checkpoint
            to_train()
        else:
            with torch.no_grad():
                for param, weights in kept:
                    param.copy_(weights)
            for group in optimizer.param_groups:
                group["train_mode"] = True
        kept.clear()

    optimizer.eval, optimizer.train = eval_mode, train_mode
    optimizer._exact_mode_switches = True
    return optimizer


class DetrTrainer(Trainer):
    """`Trainer` that resumes DETR checkpoints with `from_pretrained` (transformers 5's resume
    path loads legacy key names with `strict=False`, keeping random weights) and whose
    evaluations restore the random generators (a DataLoader iterator draws from them)."""

    def __init__(self, *args: Any, backbone_lr_ratio: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backbone_lr_ratio = backbone_lr_ratio

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        """As the Trainer's; each rank's share of a data-parallel evaluation is gathered whole
        (the loop resets `gather_function` after each evaluation)."""
        self.gather_function = self._gather_for_metrics
        return super().evaluation_loop(*args, **kwargs)

    def _gather_for_metrics(self, data: Any) -> Any:
        """The ranks' batches as one, each padding duplicate dropped once. Per-image label dicts
        go as objects: the tensor path would cut each image's own tensors to the last batch's
        remainder (its boxes, its size: a run whose validation split is not a multiple of the
        batch lost boxes, or crashed), from the CPU. Tensors (`compute_loss` makes the loss terms
        per image) go as tensors."""
        labels = isinstance(data, list) and all(isinstance(item, Mapping) for item in data)
        if labels and self.accelerator.num_processes > 1:  # unpickled on the sender's GPU else
            data = [{k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in item.items()}
                    for item in data]
        return self.accelerator.gather_for_metrics(data, use_gather_object=labels)

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            return super().evaluate(*args, **kwargs)

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """The Trainer's `total_flos` estimate, the parameter count taken once per model."""
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(self.model, "num_parameters"):
            return 0
        cached = getattr(self, "_flops_parameters", None)
        if cached is None or cached[0] is not self.model:
            cached = (self.model, self.model.num_parameters(exclude_embeddings=True))
            self._flops_parameters = cached
        return 6 * inputs[main_input].numel() * cached[1]

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """As the Trainer's, but an evaluation keeps only what `compute_metrics` reads."""
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if not return_outputs:
            return result
        loss, outputs = result
        # each batch term repeated per image: gathered across ranks like the boxes
        images = outputs.logits.shape[0]
        terms = {k: torch.as_tensor(v, device=outputs.logits.device).detach().reshape(1)
                 .expand(images) for k, v in outputs.loss_dict.items()}
        return loss, {"loss": loss, "loss_dict": terms, "logits": outputs.logits,
                      "pred_boxes": outputs.pred_boxes}

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        target = model if model is not None else self.model
        loaded = type(target).from_pretrained(resume_from_checkpoint)
        target.load_state_dict(loaded.state_dict())

    def create_optimizer(self, model: Any = None) -> Any:
        """As the Trainer's, plus the backbone's groups and exact schedule-free mode switches; a
        schedule-free optimizer gets a warm-up ratio as steps (transformers hands it
        `warmup_steps` as is: a ratio would be a fraction of one step)."""
        ratio = self.args.warmup_steps
        # `optim` is an OptimizerNames member: str() gives "OptimizerNames.SCHEDULE_FREE_ADAMW"
        optim = str(getattr(self.args.optim, "value", self.args.optim))
        fresh = self.optimizer is None
        if fresh and optim.startswith("schedule_free") and 0 < ratio < 1 and self.state.max_steps:
            self.args.warmup_steps = self.args.get_warmup_steps(self.state.max_steps)
        try:
            optimizer = super().create_optimizer(model)
        finally:
            self.args.warmup_steps = ratio
        if fresh:
            split_backbone_groups(optimizer, backbone_parameters(model or self.model),
                                  self.backbone_lr_ratio)
        return exact_mode_switches(optimizer)


def make_compute_metrics(class_names: Sequence[str], score_threshold: float, family: Family):
    """`compute_metrics` for the Trainer: mean loss terms and every detection metric."""

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        totals: dict[str, float] = {}
        count = 0
        predictions, targets = [], []
        for batch_preds, batch_labels in zip(eval_pred.predictions, eval_pred.label_ids,
                                             strict=True):
            loss_dict, logits, pred_boxes = batch_preds[:3]
            size = len(batch_labels)
            for term, value in loss_terms(loss_dict, logits, batch_labels, family).items():
                totals[term] = totals.get(term, 0.0) + value * size
            count += size
            targets.extend(decode_targets(batch_labels))
            predictions.extend(decode_predictions(logits, pred_boxes, batch_labels, family))
        metrics = {term: total / max(count, 1) for term, total in totals.items()}
        # per-class AP only at the test split's evaluation (it doubles an evaluation's time)
        metrics.update(detection_metrics(predictions, targets, class_names, score_threshold,
                                         per_class=False))
        return metrics

    return compute_metrics


def loss_terms(loss_dict: dict[str, Any], logits: Any, labels: Sequence[dict[str, Any]],
               family: Family) -> dict[str, float]:
    """The final decoder layer's loss terms under the names every family reports (`LOSS_TERMS`):
    `loss_ce` any classification term (RT-DETR / D-FINE's `loss_vfl`), `cardinality_error`
    upstream's, else counted with a query's best class score >= 0.5 as "predicted"."""
    def mean(term: str) -> float:  # a batch term, or one repeated per image (`compute_loss`)
        return float(torch.as_tensor(loss_dict[term]).double().mean())

    terms = {"loss_ce": mean("loss_ce" if "loss_ce" in loss_dict else "loss_vfl"),
             "loss_bbox": mean("loss_bbox"), "loss_iou": mean("loss_iou")}
    if "cardinality_error" in loss_dict:
        terms["cardinality_error"] = mean("cardinality_error")
    else:
        scores = torch.as_tensor(logits).float().sigmoid().amax(-1)
        predicted = (scores >= 0.5).sum(-1).float()
        truth = torch.tensor([float(len(label["class_labels"])) for label in labels])
        terms["cardinality_error"] = float((predicted - truth).abs().mean())
    assert set(terms) == set(LOSS_TERMS)
    return terms
