"""The backbone's own learning rate: its parameters in optimizer groups of their own.

Every published DETR-family recipe trains the pretrained backbone 10x slower than the rest
(`detr_core.model.recipes`); the HF Trainer builds one decay and one no-decay group for all
parameters. `split_backbone_groups` moves the backbone's parameters of each group into a new
group with the same settings (the same weight decay, so the decay / no-decay split holds) at
`ratio` x the group's learning rate. Done on the optimizer the Trainer built, before its first
step and before the learning-rate scheduler reads the groups' rates, so it works for every
optimizer the run config allows (fused AdamW, schedule-free AdamW: each keeps its per-group
state) and every scheduler (which scales each group's own initial rate); averaged weights
(EMA) average the model, whatever its groups.

Schedule-free optimizers whose evaluations leave the training weights exactly as they were.

A schedule-free optimizer (`optim: schedule_free_adamw`, `facebookresearch/schedule_free`)
trains at one point `y` and is evaluated at another, its running average `x`: the Trainer
calls `optimizer.eval()` before an evaluation (the model's weights move from `y` to `x`,
`p.lerp_(z, 1 - 1 / beta1)`) and `optimizer.train()` at the next training step (back,
`p.lerp_(z, 1 - beta1)`). In floating point the way back is not the inverse of the way there:
every evaluation moves the training weights by a few ulps, and training amplifies that, so how
often a run evaluates changed the model it trained (on the embedded default, test mAP@.5 at
step 375 was 0.563 evaluated every 25 steps against 0.591 evaluated once).

`exact_mode_switches` keeps a copy of `y` when the optimizer goes to `eval()` and, on the next
`train()`, copies it back instead of computing it: the weights an evaluation saw (and a
checkpoint saved right after it holds) are still the optimizer's `x`, and the training goes on
bit for bit as if nothing had been evaluated. One copy of the trainable weights, only between
an evaluation and the next step.

The HF `Trainer` as a DETR-family run needs it, and the metrics of its evaluations.

`DetrTrainer` resumes checkpoints with `from_pretrained`, keeps evaluations from changing the
weights trained, gives the backbone its own learning rate and keeps only the loss terms,
logits and boxes of an evaluation; `make_compute_metrics` turns those into the loss terms
every family reports under one name (`loss_terms`) and the detection metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from transformers import Trainer

from detr_core.config.metric_names import LOSS_TERMS
from detr_core.evaluation.metrics import decode_predictions, decode_targets, detection_metrics
from detr_core.model.build import backbone_parameters
from detr_core.model.families import Family


def split_backbone_groups(optimizer: torch.optim.Optimizer,
                          backbone: Iterable[torch.nn.Parameter], ratio: float) -> int:
    """Give the `backbone` parameters of every group a group of their own at `ratio` x its
    learning rate; returns how many groups were added (0 for a ratio of 1: nothing changes).
    """
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
        settings: dict[str, Any] = {k: v for k, v in group.items() if k != "params"}
        added.append({**settings, "params": mine, "lr": group["lr"] * ratio})
    for group in added:
        optimizer.add_param_group(group)
    return len(added)


def is_schedule_free(optimizer: Any) -> bool:
    """True for an optimizer with schedule-free `train()` / `eval()` modes."""
    groups = getattr(optimizer, "param_groups", None) or []
    return (callable(getattr(optimizer, "train", None))
            and callable(getattr(optimizer, "eval", None))
            and bool(groups) and all("train_mode" in group for group in groups))


def exact_mode_switches(optimizer: Any) -> Any:
    """Make `optimizer`'s eval() -> train() round trip restore its training weights exactly
    (see the module docstring); any other optimizer is returned unchanged."""
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
            kept.clear()
            to_train()
            return
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
    """`Trainer` that resumes DETR checkpoints with `from_pretrained` and whose evaluations
    leave the training's random streams alone.

    transformers 5.x writes DETR checkpoints with legacy key names and its resume path loads
    them with `strict=False`, silently keeping random weights; `from_pretrained` maps the names.

    Every DataLoader iterator, the evaluation's too, draws its base seed from the global torch
    generator, so each evaluation would shift the dropout masks of the steps after it: how
    often a run evaluates (logging steps, averaged weights, the test split during training)
    would change the model it trains. `evaluate` restores the generators afterwards, and a
    schedule-free optimizer's switch to its averaged weights and back is made exact
    (`create_optimizer`).
    """

    def __init__(self, *args: Any, backbone_lr_ratio: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backbone_lr_ratio = backbone_lr_ratio

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            return super().evaluate(*args, **kwargs)

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """The Trainer's estimate (6 x input elements x non-embedding parameters, for
        `total_flos`), with the parameter count taken once per model: the Trainer's own
        recounts every named module and parameter at every optimizer step."""
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
        """As the Trainer's, but an evaluation keeps only what `compute_metrics` reads: the
        loss terms, logits and boxes (in that order, after the loss). Each family's output
        has its own further fields (RT-DETR: denoising and encoder outputs...), which the
        Trainer would otherwise gather for every batch."""
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if not return_outputs:
            return result
        loss, outputs = result
        return loss, {"loss": loss, "loss_dict": outputs.loss_dict, "logits": outputs.logits,
                      "pred_boxes": outputs.pred_boxes}

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        target = model if model is not None else self.model
        loaded = type(target).from_pretrained(resume_from_checkpoint)
        target.load_state_dict(loaded.state_dict())

    def create_optimizer(self, model: Any = None) -> Any:
        """As the Trainer does, but a schedule-free optimizer gets its warm-up in steps.

        transformers hands `warmup_steps` to schedule-free optimizers as it is, so a ratio
        (a float below 1, transformers 5's only way to give one) would become a fraction of one
        step: a first step at 1/ratio times the learning rate. The scheduler is given the ratio
        as before. `train()` calls this method (not `create_optimizer_and_scheduler`, which an
        earlier version overrode to no effect) once the run's step count is in
        `state.max_steps`. The backbone gets its own groups at `backbone_lr_ratio` x the
        learning rate (`detr_core.training.trainer`). A schedule-free optimizer's
        evaluations give the training weights back bit for bit
        (`detr_core.training.trainer`).
        """
        ratio = self.args.warmup_steps
        # `optim` is an OptimizerNames member: str() gives "OptimizerNames.SCHEDULE_FREE_ADAMW"
        optim = str(getattr(self.args.optim, "value", self.args.optim))
        fresh = self.optimizer is None
        if fresh and optim.startswith("schedule_free") and 0 < ratio < 1 \
                and self.state.max_steps:
            self.args.warmup_steps = self.args.get_warmup_steps(self.state.max_steps)
            try:
                optimizer = super().create_optimizer(model)
            finally:
                self.args.warmup_steps = ratio
        else:
            optimizer = super().create_optimizer(model)
        if fresh:
            split_backbone_groups(optimizer, backbone_parameters(model or self.model),
                                  self.backbone_lr_ratio)
        return exact_mode_switches(optimizer)


def make_compute_metrics(class_names: Sequence[str], score_threshold: float, family: Family):
    """`compute_metrics` for the Trainer: mean loss terms and every detection metric, the
    detections scored as `family` scores them (`detr_core.evaluation.metrics`)."""

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        totals: dict[str, float] = {}
        count = 0
        predictions, targets = [], []
        for batch_preds, batch_labels in zip(eval_pred.predictions, eval_pred.label_ids,
                                             strict=True):
            loss_dict, logits, pred_boxes = batch_preds[0], batch_preds[1], batch_preds[2]
            size = len(batch_labels)
            for term, value in loss_terms(loss_dict, logits, batch_labels, family).items():
                totals[term] = totals.get(term, 0.0) + value * size
            count += size
            targets.extend(decode_targets(batch_labels))
            predictions.extend(decode_predictions(logits, pred_boxes, batch_labels, family))
        metrics = {term: total / max(count, 1) for term, total in totals.items()}
        # per-class AP only at the test split's evaluation (it doubles an evaluation's time)
        found = detection_metrics(predictions, targets, class_names, score_threshold,
                                  per_class=False)
        metrics.update(found)
        return metrics

    return compute_metrics


def loss_terms(loss_dict: dict[str, Any], logits: Any, labels: Sequence[dict[str, Any]],
               family: Family) -> dict[str, float]:
    """The final decoder layer's loss terms under the names every family reports (`LOSS_TERMS`).

    `loss_ce` is the classification term whatever its kind: cross-entropy with a no-object
    class (DETR), sigmoid focal loss (Conditional / Deformable DETR) or varifocal loss
    (RT-DETR / D-FINE, upstream `loss_vfl`). `cardinality_error` is upstream's where the
    family's loss computes it (DETR, Conditional / Deformable DETR: predicted objects minus
    true ones, absolute); for the others the same count with a query's best class score
    >= 0.5 as "predicted".
    """
    terms = {"loss_ce": float(loss_dict["loss_ce"] if "loss_ce" in loss_dict
                              else loss_dict["loss_vfl"]),
             "loss_bbox": float(loss_dict["loss_bbox"]), "loss_iou": float(loss_dict["loss_iou"])}
    if "cardinality_error" in loss_dict:
        terms["cardinality_error"] = float(loss_dict["cardinality_error"])
    else:
        scores = torch.as_tensor(logits).float().sigmoid().amax(-1)
        predicted = (scores >= 0.5).sum(-1).float()
        truth = torch.tensor([float(len(label["class_labels"])) for label in labels])
        terms["cardinality_error"] = float((predicted - truth).abs().mean())
    assert set(terms) == set(LOSS_TERMS)
    return terms
