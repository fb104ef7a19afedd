"""A trial's scratch folder on its node, and the sweep of those a killed trial left behind.

Each trial trains in a temporary folder (the Trainer's checkpoints and the restored
checkpoint, several MB) and removes it when it ends. A trial whose process is killed (a
worker SIGKILL, a driver killed or quitting at once, the node's OOM killer) never gets to
remove it, so the folder carries the host and the owning process id in its name,
`detr-trial-<host>-<pid>-*`, and every trial that starts on the node first removes this
host's folders whose process is gone. Folders of live processes, of other users and of other
hosts (containers sharing a temp dir have their own process ids) are left alone.

A trial's own output (Hugging Face logs, progress bars, warnings) into its log file.

Trials print a lot: the Trainer's log dicts, "Loading weights" / "Writing model shards" bars,
library warnings. Through Ray they would all reach the driver's terminal interleaved. Inside
the trainable the process's file descriptors 1 and 2 are pointed at `trial.log` in the trial's
folder for the length of the trial (C extensions and child processes included), then put back,
so a reused actor's next trial starts clean. The trainable writes it in the trial's working
folder, which Tune copies into the trial's result folder (`SyncConfig(sync_artifacts=True)`)
at each checkpoint and when the trial ends, on any node and any storage.

A trial's values and run config: the one merge the trainable trains with and the export writes.

Tune hands a trial its config as a FLAT dict keyed by dotted run-config names
(`training_args.learning_rate`); Ray nests keys on "/" only, so dots survive `OptunaSearch`
into each trial's `config` and `params.json`. `trial_values` is what the trial really trains
with: the space's fixed values, then the sampled ones rounded to their q (Optuna cannot
quantize a log-scale float, and its float steps drift: `0.30000000000000004`), then, where
the model is searched, recipe-relative factors made absolute against the trial's own model
(`search.space.relative_ranges`: `params.json` holds the factor, the run the value).
`trial_run_config` sets them on the base run config, with the trial's thread count
(`trial_threads`): float results depend on how many threads reduce a sum, so a bit-exact rerun
of a trial needs the same number. The trainable, `best_config.yaml`, `trials.csv` and the
report all go through these functions, so they agree field for field.

The Ray Tune function trainable: one sampled config -> one `detr_core` run.

Every evaluation of the run (every logging step) becomes a `ray.tune.report` with the eval
metrics, `step` (optimizer steps: ASHA's time attribute), `epoch`, `train_loss` and
`total_steps` (the run's planned budget, used to tell "finished" from "stopped early").
A new best step attaches its Trainer checkpoint (model + optimizer state) so Tune keeps the
best one; a retried trial resumes from its last reported checkpoint. Torch uses as many
threads as the trial has CPUs; the GPU Ray assigns (if any) is the one the Trainer sees.
The run's own output goes to `trial.log` in the trial's folder (`search.trial.trainable`). The
dataset is prepared on the trial's own node (`search.trial.node_data`): a synthetic one is made
there when missing, COCO paths are checked there.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from detr_core.config.run_config import apply_overrides, run_config_from_dict
from detr_core.train import EvaluationEvent, train_run
from detr_core.training.ema import weights_folder
from search.space.distributions import fixed_values_of, quantize_params
from search.space.relative_ranges import absolute_values
from search.store.layout import CHECKPOINT_META_FILE, TRIAL_LOG_FILE
from search.trial.node_data import data_section, prepare_on_node

PREFIX = "detr-trial-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _host_prefix() -> str:
    """`detr-trial-<host>-`, the host name reduced to characters safe in a file name."""
    return f"{PREFIX}{re.sub(r'[^A-Za-z0-9.]', '_', socket.gethostname())}-"


def _owner_pid(folder: Path, host_prefix: str) -> int | None:
    """The process id in `<host_prefix><pid>-<random>`; None for any other name."""
    if not folder.name.startswith(host_prefix):
        return None
    pid, _, rest = folder.name.removeprefix(host_prefix).partition("-")
    return int(pid) if pid.isdigit() and rest else None


def sweep_orphaned_work_dirs(parent: Path | None = None) -> list[Path]:
    """Remove this user's trial folders under `parent` (the temp dir) whose process is gone."""
    parent = Path(parent or tempfile.gettempdir())
    host_prefix = _host_prefix()
    removed = []
    for folder in parent.glob(f"{PREFIX}*"):
        pid = _owner_pid(folder, host_prefix)
        if pid is None or pid == os.getpid() or _process_alive(pid):
            continue
        try:
            if not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


@contextmanager
def trial_work_dir(parent: Path | None = None) -> Iterator[Path]:
    """A fresh scratch folder for one trial, removed when it ends; orphans swept first."""
    sweep_orphaned_work_dirs(parent)
    folder = Path(tempfile.mkdtemp(prefix=f"{_host_prefix()}{os.getpid()}-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def output_to_file(path: Path) -> Iterator[Path]:
    """Redirect this process's stdout and stderr (fds 1 and 2) to `path`, appending."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with open(path, "ab", buffering=0) as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        yield path
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def trial_values(space: Mapping[str, Any], params: Mapping[str, Any],
                 base: Mapping[str, Any] | None = None,
                 recipe: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The flat dotted values a trial trains with: fixed values, then sampled ones rounded,
    then (a search whose model is searched: `recipe` is its `SearchSpec.recipe`) each
    recipe-relative factor times the recipe of the trial's own model, against `base`."""
    values = {**fixed_values_of(dict(space)), **quantize_params(dict(space), dict(params))}
    return absolute_values(values, base, recipe)


def trial_threads(cpus_per_trial: float) -> int:
    """Torch threads of a trial: its whole CPUs, at least one."""
    return max(1, int(cpus_per_trial))


def trial_run_config(base: Mapping[str, Any], space: Mapping[str, Any],
                     params: Mapping[str, Any], threads: int | None = None,
                     recipe: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run-config dict of one trial: `base` with `trial_values(space, params, base,
    recipe)` set, and `num_threads` when the trial's thread count is given."""
    config = apply_overrides(dict(base), trial_values(space, params, base, recipe))
    if threads is not None:
        config["num_threads"] = threads
    return config


# Trainer bookkeeping that is not worth a Tune metric column.
_SKIPPED_METRICS = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")


class TuneReporter:
    """`detr_core` evaluation listener that forwards every evaluation to Tune."""

    def __init__(self, metric: str, threads: int) -> None:
        import ray  # here, not at the top: the export and --dry-run read this module's rules

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
        from ray.tune import Checkpoint, report

        checkpoint = None
        if event.is_new_best and event.best_checkpoint is not None:
            weights = weights_folder(event.best_checkpoint, self.metric)
            meta = {"step": event.step, "metric": self.metric,
                    "value": event.metrics.get(self.metric),
                    "model_dir": weights.relative_to(event.best_checkpoint).as_posix()}
            (event.best_checkpoint / CHECKPOINT_META_FILE).write_text(json.dumps(meta))
            checkpoint = Checkpoint.from_directory(str(event.best_checkpoint))
        report(metrics, checkpoint=checkpoint)


def _trial_cpus() -> int:
    from ray import tune

    resources = tune.get_context().get_trial_resources().required_resources
    return trial_threads(resources.get("CPU", 1))


def _restore_checkpoint(work_dir: Path) -> Path | None:
    """Copy the trial's last reported checkpoint (after a retry) to a local folder."""
    from ray import tune

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
    from ray import tune

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
