"""The Ray Tune function trainable: one sampled config -> one `detr_core` run.

Every evaluation of the run (every logging step) becomes a `ray.tune.report` with the eval
metrics, `step` (optimizer steps: ASHA's time attribute), `epoch`, `train_loss` and
`total_steps` (the run's planned budget, used to tell "finished" from "stopped early").
A new best step attaches its Trainer checkpoint (model + optimizer state) so Tune keeps the
best one; a retried trial resumes from its last reported checkpoint. Torch uses as many
threads as the trial has CPUs; the GPU Ray assigns (if any) is the one the Trainer sees.
The run's own output goes to `trial.log` in the trial's folder (`search.trial.trial_output`). The
dataset is prepared on the trial's own node (`search.trial.node_data`): a synthetic one is made
there when missing, COCO paths are checked there.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

import ray
from ray import tune

from detr_core.config.run_config import run_config_from_dict
from detr_core.train import EvaluationEvent, train_run
from detr_core.training.ema import weights_folder
from search.store.layout import CHECKPOINT_META_FILE, TRIAL_LOG_FILE
from search.trial.node_data import data_section, prepare_on_node
from search.trial.trial_config import trial_run_config, trial_threads
from search.trial.trial_output import output_to_file
from search.trial.trial_workdir import trial_work_dir

# Trainer bookkeeping that is not worth a Tune metric column.
_SKIPPED_METRICS = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")


class TuneReporter:
    """`detr_core` evaluation listener that forwards every evaluation to Tune."""

    def __init__(self, metric: str, threads: int) -> None:
        self.metric = metric
        self.threads = threads
        self.node_id = ray.get_runtime_context().get_node_id()
        # which accelerator the trial trains on: GPUs Ray assigned (shared ones included)
        self.device = ",".join(f"gpu{i}" for i in ray.get_gpu_ids()) or "cpu"

    def on_evaluation(self, event: EvaluationEvent) -> None:
        metrics: dict[str, Any] = {
            k: v for k, v in event.metrics.items() if k not in _SKIPPED_METRICS
        }
        metrics.update(
            step=event.step,
            epoch=event.epoch,
            total_steps=event.max_steps,
            train_loss=event.train_loss if event.train_loss is not None else math.nan,
            learning_rate=event.learning_rate if event.learning_rate is not None else math.nan,
            best_step=event.best_step if event.best_step is not None else -1,
            node_id=self.node_id,
            device=self.device,
            num_threads=self.threads,  # what best_config.yaml records for a bit-exact rerun
            first_step_time=event.first_step_time or math.nan,  # start-up latency, measurable
        )
        checkpoint = None
        if event.is_new_best and event.best_checkpoint is not None:
            weights = weights_folder(event.best_checkpoint, self.metric)
            meta = {"step": event.step, "metric": self.metric,
                    "value": event.metrics.get(self.metric),
                    "model_dir": weights.relative_to(event.best_checkpoint).as_posix()}
            (event.best_checkpoint / CHECKPOINT_META_FILE).write_text(json.dumps(meta))
            checkpoint = tune.Checkpoint.from_directory(str(event.best_checkpoint))
        tune.report(metrics, checkpoint=checkpoint)


def _trial_cpus() -> int:
    resources = tune.get_context().get_trial_resources().required_resources
    return trial_threads(resources.get("CPU", 1))


def _restore_checkpoint(work_dir: Path) -> Path | None:
    """Copy the trial's last reported checkpoint (after a retry) to a local folder."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    target = work_dir / "resume_checkpoint"
    shutil.rmtree(target, ignore_errors=True)
    with checkpoint.as_directory() as folder:
        shutil.copytree(folder, target)
    return target


def train_detr(config: dict[str, Any], *, base: dict[str, Any], space: dict[str, Any],
               data: dict[str, Any], metric: str, recipe: dict[str, Any] | None = None) -> None:
    """Tune entry point; `base`, `space`, the `data` record and the spec's `recipe` record
    (per-trial recipe-relative keys) come via `with_parameters`.

    `data` is the driver's record of the dataset (`search.trial.node_data.data_record`): synthetic
    parameters or absolute COCO paths, prepared on this node before training.
    """
    # Tune runs the trial in its working folder and uploads it from whichever node it is on;
    # `get_trial_dir()` names the driver's staging folder for an actor's first trial instead,
    # which only reaches storage when the trial runs on the driver's node.
    with output_to_file(Path.cwd() / TRIAL_LOG_FILE):
        threads = _trial_cpus()
        _train(trial_run_config(base, space, config, threads=threads, recipe=recipe), data,
               metric, threads)


def train_finalist(config: dict[str, Any], *, runs: dict[int, dict[str, Any]],
                   data: dict[str, Any], metric: str) -> None:
    """Tune entry point of the finalists stage (`search.results.finalists`): `config` is
    `{"finalist": N, "seed": S}`, `runs` maps N to the configuration's complete run config
    (via `with_parameters`); trained and reported exactly as a search trial, with seed S."""
    with output_to_file(Path.cwd() / TRIAL_LOG_FILE):
        threads = _trial_cpus()
        raw = copy.deepcopy(runs[int(config["finalist"])])
        raw.update(seed=int(config["seed"]), num_threads=threads)
        _train(raw, data, metric, threads)


def _train(raw: dict[str, Any], data: dict[str, Any], metric: str, threads: int) -> None:
    """One trial's run: its data prepared on this node, every evaluation reported to Tune."""
    raw["data"] = data_section(data)
    run_config = run_config_from_dict(raw, source=f"trial {tune.get_context().get_trial_id()}")
    with trial_work_dir() as work_dir:
        prepared = prepare_on_node(data, run_config.data)
        train_run(
            run_config,
            output_dir=work_dir / "run",
            listeners=[TuneReporter(metric, threads)],
            resume_from_checkpoint=_restore_checkpoint(work_dir),
            prepared_data=prepared,
            evaluate_test=False,
            keep_partial=False,  # Tune keeps the trial's best checkpoint
        )
