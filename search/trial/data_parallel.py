"""A trial that is a data-parallel job: the Tune trial drives a Ray Train `TorchTrainer` of N
workers (DDP: gloo on CPUs, NCCL on GPUs), each rank running `detr_core`'s `train_run`.

- Batch and steps: `per_device_train_batch_size` is per worker (the Trainer's meaning), so the
  global batch is that x N x accumulation; `step` (ASHA's time) is the job's optimizer step; the
  learning rate is not scaled.
- Every rank trains the same run config (the searched values are the trial's, sampled once by
  the driver) with the same seed; each rank draws its own augmentations (`detr_core.train`).
- Every rank evaluates its share of the validation split and all get the whole split's metrics;
  every rank calls `ray.train.report` after each evaluation (a barrier); rank 0 attaches the
  checkpoint of a new best step. The controller forwards rank 0's report (`ForwardToTrial`) and
  the trial reports it to Tune with the checkpoint, so ASHA, the study, retries, the export and
  the report see a trial as they see a one-process one.
- Retries are Tune's alone (`experiment.max_failures`): Train's own are off, so a lost worker
  fails the job, and Tune restarts the trial, all its workers, from its last checkpoint.
- The trial itself holds no CPU (`driver_resources`): the workers' placement group is the
  controller's own, booked beside Tune's. A stopped trial's actor dies with its controller and
  workers; Ray Train's cleaner then frees their placement group (through the dashboard's State
  API: `--no-dashboard` is refused).
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any

from ray.train import UserCallback

from detr_core.config.run_config import run_config_from_dict
from search.store.storage import ExperimentPath, join_uri, patiently, remove_tree
from search.trial.node_data import prepare_on_node

#: what the trial (the job's driver) books: no CPU, so all of a node's go to workers; Ray needs
#: a resource, so a token of memory
DRIVER_MEMORY_BYTES = 1 << 20
#: the trial folder's Train run folders: `<prefix><random>`, one a job
TRAIN_RUN_PREFIX = "data_parallel-"


def driver_resources() -> Any:
    """Tune's resources for a data-parallel trial's driver."""
    from ray.tune import PlacementGroupFactory

    return PlacementGroupFactory([{"CPU": 0, "memory": DRIVER_MEMORY_BYTES}])


class ForwardToTrial(UserCallback):
    """Train callback (in the controller): rank 0's report and the checkpoint, to the trial."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]],
                     checkpoint: Any) -> None:
        self.queue.put((metrics[0], checkpoint))


def run_data_parallel(raw: dict[str, Any], data: dict[str, Any], metric: str,
                      resources: dict[str, Any], storage: str) -> None:
    """Run the trial as a `TorchTrainer` job (`resources`: `workers_per_trial`,
    `cpus_per_worker`, `gpus_per_worker`); its Train run folder lives under the trial's in
    `storage` (the experiment's folder) until the driver's `remove_train_runs`."""
    import ray.train
    from ray import tune
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    context = tune.get_context()
    trial_folder = join_uri(storage, Path(context.get_trial_dir()).name)
    reports = Queue(actor_options={"num_cpus": 0})
    gpus = float(resources["gpus_per_worker"])
    trainer_name = f"{TRAIN_RUN_PREFIX}{uuid.uuid4().hex[:8]}"
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"raw": raw, "data": data, "metric": metric, "gpus": gpus,
                           "experiment": context.get_experiment_name(),
                           "source": f"trial {context.get_trial_id()}",
                           "resume": tune.get_checkpoint()},
        scaling_config=ray.train.ScalingConfig(
            num_workers=int(resources["workers_per_trial"]), use_gpu=gpus > 0,
            resources_per_worker={"CPU": float(resources["cpus_per_worker"]), "GPU": gpus}),
        run_config=ray.train.RunConfig(
            name=trainer_name, storage_path=trial_folder,
            callbacks=[ForwardToTrial(reports)],
            # Tune's retries only (a preempted node too: Train would retry it without limit)
            failure_config=ray.train.FailureConfig(max_failures=0, max_preemption_failures=0),
            # Train deletes none: the trial removes each once Tune holds a copy (below), as
            # Train's own num_to_keep could delete one before the trial had copied it
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=None)),
    )
    print(f"data-parallel job {trainer_name}: {resources['workers_per_trial']} workers; their "
          "output is in Ray's worker logs (the dashboard's Train and Jobs views)", flush=True)
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # raised in the trial below
            failure.append(exc)
        finally:
            reports.put(None)

    thread = threading.Thread(target=fit, name="data-parallel-job", daemon=True)
    thread.start()
    forwarded = None
    while (item := reports.get()) is not None:
        metrics, checkpoint = item
        kept = tune.Checkpoint(checkpoint.path, checkpoint.filesystem) if checkpoint else None
        patiently(lambda m=metrics, c=kept: tune.report(m, checkpoint=c),
                  "of this trial's results")
        if checkpoint is not None:  # Tune has its copy: the one before goes
            if forwarded is not None:
                forwarded.filesystem.delete_dir(forwarded.path)
            forwarded = checkpoint
    thread.join()
    if failure:
        raise failure[0]


def remove_train_runs(experiment: ExperimentPath) -> None:
    """The Train run folders in `experiment`'s trial folders: their checkpoints are Tune's now,
    and a retry resumes from Tune's (a trial stopped by ASHA or a budget ends with its job, so
    the sweep is the driver's, after `Tuner.fit`)."""
    for trial in experiment.iterdir() if experiment.is_dir() else []:
        for run in trial.glob(f"{TRAIN_RUN_PREFIX}*") if trial.is_dir() else []:
            remove_tree(run)


def train_worker(config: dict[str, Any]) -> None:
    """One rank of the job (a Ray Train worker): `train_run` on its node's copy of the data,
    reporting every evaluation (`search.trial.trainable.TuneReporter` in its Train form)."""
    import ray.train

    if not config["gpus"]:  # CPU workers: not the GPUs of their node, which Ray leaves visible
        os.environ.update(CUDA_VISIBLE_DEVICES="", ACCELERATE_USE_CPU="true")
    from detr_core.train import train_run
    from search.trial.trainable import TuneReporter, restore_checkpoint, trial_work_dir

    context = ray.train.get_context()
    run_config = run_config_from_dict(
        config["raw"], source=f"{config['source']} rank {context.get_world_rank()}")
    with trial_work_dir() as work_dir:
        prepared = prepare_on_node(config["data"], run_config.data)
        reporter = TuneReporter(config["metric"], int(config["raw"]["num_threads"]),
                                experiment=config["experiment"], data_parallel=True)
        train_run(run_config, output_dir=work_dir / "run", listeners=[reporter],
                  # the trial's checkpoint; never Train's own (its retries are off)
                  resume_from_checkpoint=restore_checkpoint(config["resume"], work_dir),
                  prepared_data=prepared, evaluate_test=False, keep_partial=False)
