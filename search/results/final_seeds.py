"""`--final-seeds K`: retrain the search's winner with K seeds and keep their test metrics.

The diary repeated its best runs by hand (12_1..12_4, 20_1..20_3) to see the spread; here the
winner's `best_config.yaml` is retrained K times in parallel Ray tasks, seeds `seed`..`seed+K-1`,
each at its full budget and evaluated on the test split. A task runs on whichever node Ray
picks: it prepares the data there (`search.trial.node_data`), trains into a folder on that node's
disk, then copies the run (without the Trainer's optimizer checkpoints) to
`<experiment>/final_seeds/seed_<S>/` on the experiment's storage, a local path or a URI. The
export reads the results back (`search.results.winner_eval.read_seed_metrics`) and the report shows
mean ± std.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from detr_core.config import run_config_from_dict
from detr_core.files import CHECKPOINTS_DIR, parse_yaml_mapping
from search.results.winner_eval import seed_folder
from search.space import SearchSpec
from search.store import (
    BEST_CONFIG_FILE,
    TEST_METRICS_FILE,
    TRIAL_LOG_FILE,
    ExperimentPath,
    copy_tree,
    remove_tree,
)
from search.trial import data_section, trial_threads


def _train_seed(raw: dict[str, Any], record: dict[str, Any],
                target: ExperimentPath) -> dict[str, Any]:
    """One repeated run of the winner (a Ray task): full budget, evaluated on the test split,
    trained on this node and copied to `target`."""
    from detr_core.evaluation import write_report
    from detr_core.training import train_run
    from search.trial import output_to_file, prepare_on_node

    work = Path(tempfile.mkdtemp(prefix="detr-seed-"))
    try:
        with output_to_file(work / TRIAL_LOG_FILE):  # its output, as a trial's
            config = run_config_from_dict(raw, source=f"final seed {raw['seed']}")
            prepared = prepare_on_node(record, config.data)
            result = train_run(config, work, prepared_data=prepared)
        metrics = result.test_metrics or {}
        write_report(metrics, work / TEST_METRICS_FILE)
        copy_tree(work, target, exclude={CHECKPOINTS_DIR})
        return metrics
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_final_seeds(experiment_dir: ExperimentPath, spec: SearchSpec, data: dict[str, Any],
                    k: int) -> list[dict[str, Any]]:
    """Retrain the winner with K seeds in parallel Ray tasks; test metrics per seed on storage.

    `data` is the driver's prepared-data record (`search.trial.node_data.data_record`).
    """
    import ray

    config_path = experiment_dir / BEST_CONFIG_FILE
    best = parse_yaml_mapping(config_path.read_text(encoding="utf-8"), config_path)
    best["data"] = data_section(data)
    cpus, gpus = spec.resources.cpus_per_trial, spec.resources.gpus_per_trial
    best["num_threads"] = best.get("num_threads") or trial_threads(cpus)
    first_seed = int(best["seed"])
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus)(_train_seed)
    futures, folders = [], []
    for seed in range(first_seed, first_seed + k):
        folder = seed_folder(experiment_dir, seed)
        remove_tree(folder)
        folders.append(folder)
        futures.append(remote.remote({**best, "seed": seed}, data, folder))
    print(f"retraining the winner with {k} seeds: {[f.name for f in folders]}", flush=True)
    return ray.get(futures)
