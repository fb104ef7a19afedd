"""The Ray Tune function trainable: one sampled config -> one `detr_core` run.

`trial_values` is what a trial trains with: its flat dotted config (Ray nests keys on "/" only)
over the space's fixed values, rounded to each q, with recipe factors made absolute.
`best_config.yaml`, `trials.csv` and the report go through the same functions, so they agree.
Each evaluation is a `ray.tune.report` (`step`: ASHA's time attribute; `total_steps`: the
planned budget) with the Trainer checkpoint of each new best step, which a retried trial resumes
from. Fds 1 and 2 go to `trial.log` in the trial's working folder. Scratch folders are named
`detr-trial-<host>-<pid>-*`, so a killed trial's is removed by the next trial on that host.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detr_core.config.run_config import apply_overrides, run_config_from_dict
from search.space.distributions import fixed_values_of, quantize_params
from search.space.relative_ranges import absolute_values
from search.store.layout import CHECKPOINT_META_FILE, TRIAL_LOG_FILE
from search.store.storage import patiently
from search.trial.node_data import data_section, prepare_on_node

if TYPE_CHECKING:
    from detr_core.training.events import EvaluationEvent

PREFIX = "detr-trial-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    return True


def _host_prefix() -> str:
    """`detr-trial-<host>-`, the host name reduced to characters safe in a file name."""
    return f"{PREFIX}{re.sub(r'[^A-Za-z0-9.]', '_', socket.gethostname())}-"


def sweep_orphaned_work_dirs(parent: Path | None = None) -> list[Path]:
    """Remove this user's trial folders under `parent` (the temp dir) whose process is gone."""
    host_prefix = _host_prefix()  # only [A-Za-z0-9._-]: nothing a glob pattern would expand
    removed = []
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{host_prefix}*"):
        pid, _, rest = folder.name.removeprefix(host_prefix).partition("-")  # <pid>-<random>
        if not (pid.isdigit() and rest) or int(pid) == os.getpid() or _process_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if folder.is_dir() and folder.stat().st_uid == os.getuid():
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
        for fd, old in zip((1, 2), saved, strict=True):
            os.dup2(old, fd)
            os.close(old)


def trial_values(space: Mapping[str, Any], params: Mapping[str, Any],
                 base: Mapping[str, Any] | None = None,
                 recipe: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The flat dotted values a trial trains with: fixed values, sampled ones rounded, then
    per-trial recipe factors (`recipe`: the `SearchSpec.recipe`) made absolute against `base`."""
    values = {**fixed_values_of(dict(space)), **quantize_params(dict(space), dict(params))}
    return absolute_values(values, base, recipe)


def trial_threads(cpus_per_trial: float) -> int:
    """Torch threads of a trial: its whole CPUs, at least one."""
    return max(1, int(cpus_per_trial))


def trial_run_config(base: Mapping[str, Any], space: Mapping[str, Any],
                     params: Mapping[str, Any], threads: int | None = None,
                     recipe: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`base` with `trial_values` set, and `num_threads` (float results depend on how many
    threads reduce a sum) when `threads` is given."""
    config = apply_overrides(dict(base), trial_values(space, params, base, recipe))
    if threads is not None:
        config["num_threads"] = threads
    return config


_SKIPPED_METRICS = (  # Trainer bookkeeping not worth a Tune metric column
    "eval_runtime", "eval_samples_per_second", "eval_steps_per_second")


#: A folder: while `<folder>/hold` (or `hold-<Tune experiment name>`) exists, a trial waits
#: after each report; for tests that stop a search whose trials must not finish first.
TRIAL_GATE_ENV = "DETR_SEARCH_TRIAL_GATE"


def wait_at_gate(experiment: str) -> None:
    """Block while the gate of `TRIAL_GATE_ENV` is held for `experiment` (no gate: return)."""
    gate = os.environ.get(TRIAL_GATE_ENV)
    while gate and any((Path(gate) / name).exists() for name in ("hold", f"hold-{experiment}")):
        time.sleep(0.05)


class TuneReporter:
    """`detr_core` evaluation listener that forwards every evaluation to Tune; in a rank of a
    data-parallel trial (`data_parallel`), to Ray Train: every rank reports (a barrier), rank 0
    with the checkpoint (`search.trial.data_parallel`)."""

    def __init__(self, metric: str, threads: int, experiment: str | None = None,
                 data_parallel: bool = False) -> None:
        import ray  # here, not at the top: the export and --dry-run read this module's rules

        self.metric = metric
        self.threads = threads
        self.node_id = ray.get_runtime_context().get_node_id()
        # which accelerator the trial trains on: GPUs Ray assigned (shared ones included)
        self.device = ",".join(f"gpu{i}" for i in ray.get_gpu_ids()) or "cpu"
        self.experiment = experiment or ray.tune.get_context().get_experiment_name()
        self.data_parallel = data_parallel
        self.keeps_checkpoints = (not data_parallel
                                  or ray.train.get_context().get_world_rank() == 0)

    def on_evaluation(self, event: EvaluationEvent) -> None:
        from ray.train import get_context as train_context
        from ray.train import report as train_report
        from ray.tune import Checkpoint, report

        from detr_core.training.ema import weights_folder

        metrics: dict[str, Any] = {k: v for k, v in event.metrics.items()
                                   if k not in _SKIPPED_METRICS}
        metrics.update(
            step=event.step, epoch=event.epoch, total_steps=event.max_steps,
            train_loss=event.train_loss if event.train_loss is not None else math.nan,
            learning_rate=event.learning_rate if event.learning_rate is not None else math.nan,
            best_step=event.best_step if event.best_step is not None else -1,
            node_id=self.node_id, device=self.device,
            num_threads=self.threads,  # what best_config.yaml records for a bit-exact rerun
            first_step_time=event.first_step_time or math.nan,  # start-up latency, measurable
        )
        if self.data_parallel:
            metrics["workers"] = train_context().get_world_size()
        checkpoint = None
        if event.is_new_best and event.best_checkpoint is not None and self.keeps_checkpoints:
            weights = weights_folder(event.best_checkpoint, self.metric)
            meta = {"step": event.step, "metric": self.metric,
                    "value": event.metrics.get(self.metric),
                    "model_dir": weights.relative_to(event.best_checkpoint).as_posix()}
            (event.best_checkpoint / CHECKPOINT_META_FILE).write_text(json.dumps(meta))
            checkpoint = Checkpoint.from_directory(str(event.best_checkpoint))
        if self.data_parallel:  # not retried: a rank reporting twice would break the barrier
            train_report(metrics, checkpoint=checkpoint,
                         checkpoint_dir_name=f"checkpoint_{event.step:06d}")
        else:  # a storage that does not answer is waited out, not failed (and retried) at once
            patiently(lambda: report(metrics, checkpoint=checkpoint), "of this trial's results")
        wait_at_gate(self.experiment)


def restore_checkpoint(checkpoint: Any, work_dir: Path) -> Path | None:
    """Copy the trial's last reported checkpoint (after a retry; None: none) to a local folder."""
    if checkpoint is None:
        return None
    target = work_dir / "resume_checkpoint"
    shutil.rmtree(target, ignore_errors=True)
    with checkpoint.as_directory() as folder:
        shutil.copytree(folder, target)
    return target


def train_detr(config: dict[str, Any], *, base: dict[str, Any], space: dict[str, Any],
               data: dict[str, Any], metric: str, recipe: dict[str, Any] | None = None,
               workers: dict[str, Any] | None = None) -> None:
    """Tune entry point; `base`, `space`, `data` (the driver's dataset record,
    `search.trial.node_data.data_record`), the spec's `recipe` and, for a data-parallel trial,
    `workers` (`data_parallel_workers`) come via `with_parameters`."""
    _train(lambda threads: trial_run_config(base, space, config, threads=threads, recipe=recipe),
           data, metric, workers)


def train_finalist(config: dict[str, Any], *, runs: dict[int, dict[str, Any]],
                   data: dict[str, Any], metric: str,
                   workers: dict[str, Any] | None = None) -> None:
    """Tune entry point of the finalists stage: `config` is `{"finalist": N, "seed": S}`, `runs`
    maps N to its complete run config; trained as a search trial, with seed S."""
    _train(lambda threads: {**copy.deepcopy(runs[int(config["finalist"])]),
                            "seed": int(config["seed"]), "num_threads": threads}, data, metric,
           workers)


def data_parallel_workers(resources: Any, storage: str) -> dict[str, Any] | None:
    """What a trial needs to run as a data-parallel job (`resources`: the spec's
    `ResourceSpec`; `storage`: the experiment's folder, where its Train runs go); None: one
    process a trial."""
    if resources.workers_per_trial == 1:
        return None
    return {"workers_per_trial": resources.workers_per_trial, "storage": storage,
            "cpus_per_worker": resources.cpus_per_worker,
            "gpus_per_worker": resources.gpus_per_worker}


def _train(make_raw: Callable[[int], dict[str, Any]], data: dict[str, Any], metric: str,
           workers: dict[str, Any] | None = None) -> None:
    """One trial's run (`make_raw(threads)`: its run config), output into its `trial.log`, its
    data prepared on this node, every evaluation reported to Tune; with `workers`, a
    data-parallel job (`search.trial.data_parallel`)."""
    # the working folder, not `get_trial_dir()`: that names the driver's staging folder for an
    # actor's first trial, which only reaches storage when the trial runs on the driver's node
    with output_to_file(Path.cwd() / TRIAL_LOG_FILE):
        from ray import tune

        from detr_core.train import train_run

        context = tune.get_context()
        cpus = (workers["cpus_per_worker"] if workers else
                context.get_trial_resources().required_resources.get("CPU", 1))
        threads = trial_threads(cpus)
        raw = make_raw(threads)
        raw["data"] = data_section(data)
        run_config = run_config_from_dict(raw, source=f"trial {context.get_trial_id()}")
        if workers:
            from search.trial.data_parallel import run_data_parallel

            run_data_parallel(raw, data, metric, workers, workers["storage"])
            return
        with trial_work_dir() as work_dir:
            prepared = prepare_on_node(data, run_config.data)
            train_run(run_config, output_dir=work_dir / "run",
                      listeners=[TuneReporter(metric, threads)],
                      resume_from_checkpoint=restore_checkpoint(tune.get_checkpoint(), work_dir),
                      prepared_data=prepared, evaluate_test=False,
                      keep_partial=False)  # Tune keeps the trial's best checkpoint
