"""One DETR fine-tuning run on the Hugging Face `Trainer`: what one diary "version" was. The
best step is reloaded with `from_pretrained` into `best_model/` (transformers'
`load_best_model_at_end` does not restore DETR weights in 5.x) and evaluated on the test split.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import set_seed
from transformers.integrations import TensorBoardCallback

from detr_core.config.run_config import RunConfig, load_default_run_config, load_run_config
from detr_core.config.training_args import build_training_args
from detr_core.data.dataset import CocoDetectionDataset, DetrCollator, build_augmentation
from detr_core.data.images import UnreadableImageError
from detr_core.data.prepare import PreparedData, crowded_images_note
from detr_core.evaluate import evaluate_prepared, print_report, write_report
from detr_core.files import file_io
from detr_core.files.errors import ArgumentParser, errors_from, exit_on_user_error
from detr_core.model.build import (
    build_image_processor,
    build_model,
    load_image_processor,
    load_trained_model,
)
from detr_core.model.families import family_of_model
from detr_core.model.recipes import apply_recipe, run_value
from detr_core.training.distributed import settle_batch_norm, world
from detr_core.training.ema import EmaCallback, evaluate_averaged, weights_folder
from detr_core.training.events import (  # EvaluationEvent: re-exported for callers
    TEST_PREFIX,
    EvalHistoryWriter,
    EvaluationEvent,  # noqa: F401
    EvaluationListener,
    EvaluationRelay,
)
from detr_core.training.partial_run import (
    BestSoFar,
    RunInterrupted,
    best_model_note,
    stop_signals_raise_interrupt,
)
from detr_core.training.preflight import check_run_inputs
from detr_core.training.trainer import DetrTrainer, make_compute_metrics


@dataclass
class RunResult:
    """Where a finished run put things and how good its best step was."""

    output_dir: Path
    best_model_dir: Path | None  # None on the other ranks than 0 of a data-parallel job
    best_step: int
    best_metric: float
    metric_name: str
    max_steps: int
    test_metrics: dict[str, Any] | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def build_datasets(config: RunConfig, data: PreparedData,
                   rank: int = 0) -> dict[str, CocoDetectionDataset]:
    """Train, val and test datasets (albumentations ignores the global seeds: each gets one, and
    each rank of a data-parallel job its own augmentation stream)."""
    aug = config.augmentation
    train_tf = build_augmentation(aug.train, aug.min_area, aug.min_visibility,
                                  "augmentation.train", seed=config.seed + rank)
    eval_tf = build_augmentation(aug.val, 0.0, 0.0, "augmentation.val", seed=config.seed)
    datasets = {"train": CocoDetectionDataset(data.train, data.label_map, train_tf),
                "val": CocoDetectionDataset(data.val, data.label_map, eval_tf)}
    if data.test is not None:
        datasets["test"] = CocoDetectionDataset(data.test, data.label_map, eval_tf)
    return datasets


# "mtime may not be reliable": the Trainer's warning before its own correct fallback (by step)
logging.getLogger("transformers.trainer_utils").addFilter(
    lambda record: "mtime may not be reliable" not in record.getMessage())


def train_run(config: RunConfig, output_dir: str | Path,
              listeners: Sequence[EvaluationListener] = (),
              resume_from_checkpoint: str | Path | None = None,
              prepared_data: PreparedData | None = None, evaluate_test: bool = True,
              keep_partial: bool = True) -> RunResult:
    """Fine-tune, keep the best step as `best_model/`, evaluate it on the test split if any.
    Stopped by a `KeyboardInterrupt` or an unreadable image (then only with `keep_partial`),
    the best model so far is kept and `RunInterrupted` / `UnreadableImageError` says where."""
    output_dir = Path(output_dir).resolve()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    torch.set_num_threads(config.num_threads or cores or os.cpu_count() or 1)
    set_seed(config.seed)
    data = check_run_inputs(config, prepared_data)
    rank, ranks = world()
    if evaluate_test and ranks > 1:  # only rank 0 keeps the model: the others would not join
        raise ValueError("evaluate_test needs one process: a data-parallel run evaluates its "
                         "best model on the test split afterwards, in one")
    datasets = build_datasets(config, data, rank)
    processor = build_image_processor(config.model)
    model = build_model(config.model, data.label_map, config.iou_loss, config.freeze_backbone)
    # what the checkpoint's recipe fills, said once the model is built: no line before an error
    filled, sources = apply_recipe(config)
    taken = [key for key, source in sources.items() if source.startswith("recipe")]
    if taken:
        values = ", ".join(f"{key.removeprefix('training_args.')} {run_value(filled, key):g}"
                           for key in taken)
        print(f"{sources[taken[0]]}: {values} (unset in the run)", file=sys.stderr, flush=True)
    config = filled
    if crowded := crowded_images_note(data, model.config.num_queries):
        print(crowded, file=sys.stderr, flush=True)
    args = build_training_args(config.training_args, output_dir / file_io.CHECKPOINTS_DIR,
                               config.seed)
    if batch_norm := settle_batch_norm(model, on_gpu=args.device.type == "cuda"):
        print(f"data-parallel: {batch_norm}", file=sys.stderr, flush=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    best_so_far = BestSoFar()
    listeners = [EvalHistoryWriter(output_dir, resume=resume_from_checkpoint is not None),
                 best_so_far, *listeners]

    from torch.utils.tensorboard import SummaryWriter
    history: list[dict[str, float]] = []
    writer = SummaryWriter(log_dir=str(output_dir / file_io.TENSORBOARD_DIR))
    relay = EvaluationRelay(listeners, history)
    # the average is updated before the relay hears of a step, and saved before it reports
    ema = EmaCallback(config.ema, resume_from_checkpoint) if config.ema is not None else None
    trainer = DetrTrainer(
        model=model, args=args, data_collator=DetrCollator(processor),
        train_dataset=datasets["train"], eval_dataset=datasets["val"], processing_class=processor,
        backbone_lr_ratio=config.backbone_lr_ratio or 1.0,
        compute_metrics=make_compute_metrics(
            data.label_map.names, config.evaluation.score_threshold, family_of_model(model)),
        callbacks=[TensorBoardCallback(writer), *([ema] if ema else []), relay])
    # beside val: the test split (`test_during_training`), averaged weights on each (`*_ema_*`)
    splits = [("eval", datasets["val"])]
    if config.evaluation.test_during_training and "test" in datasets:
        relay.add_evaluation(TEST_PREFIX.rstrip("_"), lambda: trainer.evaluate(
            datasets["test"], metric_key_prefix="test"))
        splits.append(("test", datasets["test"]))
    if ema is not None:
        for prefix, dataset in splits:
            relay.add_evaluation(prefix, lambda d=dataset, p=prefix: evaluate_averaged(
                trainer, ema.module, d, p))
    metric = args.metric_for_best_model
    categories = [{"id": cid, "name": name} for cid, name in
                  zip(data.label_map.category_ids, data.label_map.names, strict=True)]

    def keep(checkpoint: Path, step: int, value: float | None) -> Path:
        files = {file_io.CATEGORIES_FILE: categories,
                 file_io.BEST_STEP_FILE: {"step": step, "metric": metric, "value": value}}
        return export_best_model(weights_folder(checkpoint, metric),
                                 output_dir / file_io.BEST_MODEL_DIR, config.iou_loss, files)

    try:
        trainer.train(resume_from_checkpoint=str(resume_from_checkpoint)
                      if resume_from_checkpoint else None)
    except KeyboardInterrupt:
        note = best_model_note(best_so_far, metric, keep)
        raise RunInterrupted(trainer.state.global_step, trainer.state.max_steps, note) from None
    except UnreadableImageError as exc:
        if not keep_partial:
            raise
        note = best_model_note(best_so_far, metric, keep)
        raise UnreadableImageError(f"{exc.problem}; {note}", source=exc.source,
                                   key=exc.key) from None
    finally:
        writer.close()
    state = trainer.state
    step, value = int(state.best_global_step), float(state.best_metric)
    # only rank 0 of a data-parallel job saves weights into its checkpoints
    best_model_dir = (keep(Path(state.best_model_checkpoint), step, value)
                      if trainer.is_world_process_zero() else None)
    result = RunResult(output_dir, best_model_dir, step, value, metric, state.max_steps,
                       history=history)
    if evaluate_test and data.test is not None and best_model_dir is not None:
        result.test_metrics = evaluate_prepared(
            best_model_dir, config, data, "test", datasets["test"], processor)
        write_report(result.test_metrics, best_model_dir / file_io.TEST_METRICS_FILE)
        print_report(result.test_metrics, title=f"test metrics of {best_model_dir}")
    return result


def export_best_model(checkpoint: Path, target: Path, iou_loss: str,
                      files: dict[str, Any] | None = None) -> Path:
    """Reload the best checkpoint with `from_pretrained` into a clean model folder, built whole."""
    model = load_trained_model(checkpoint, iou_loss)
    staging = file_io.staging_folder(target)
    model.save_pretrained(staging)
    load_image_processor(checkpoint).save_pretrained(staging)
    for name, content in (files or {}).items():
        file_io.write_json_atomic(staging / name, content)
    return file_io.replace_folder(staging, target)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when done, 2 on bad input, 130 / 143 when Ctrl-C / SIGTERM stopped the run."""
    parser = ArgumentParser(prog="python -m detr_core.train", description="Fine-tune DETR once, "
                            "keep the best step, evaluate it on the test split.")
    parser.add_argument("--config", type=Path,
                        help="run YAML (default: the embedded synthetic + tiny-DETR config)")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/run"),
                        help="checkpoints, best_model/, tensorboard/ (default: outputs/run)")
    args = parser.parse_args(argv)
    config = load_run_config(args.config) if args.config else load_default_run_config()
    with stop_signals_raise_interrupt() as stop, errors_from(args.config):
        try:
            result = train_run(config, args.output_dir)
        except KeyboardInterrupt as exc:  # a bare one: before training, or while keeping
            print(exc if isinstance(exc, RunInterrupted) else
                  f"interrupted; nothing was kept beyond {args.output_dir}", file=sys.stderr,
                  flush=True)
            return stop.exit_code
    print(f"best {result.metric_name} = {result.best_metric:.4f} at step {result.best_step} "
          f"of {result.max_steps}; model: {result.best_model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
