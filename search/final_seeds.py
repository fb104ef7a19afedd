"""`--final-seeds K`: retrain the search's winner with K seeds and keep their test metrics.

The diary repeated its best runs by hand (12_1..12_4, 20_1..20_3) to see the spread; here the
winner's `best_config.yaml` is retrained K times in parallel Ray tasks, seeds `seed`..`seed+K-1`,
each at its full budget and evaluated on the test split. The export reads the results back
(`search.winner_eval.read_seed_metrics`) and the report shows mean ± std.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from detr_core.config import run_config_from_dict
from detr_core.yaml_io import load_yaml_mapping
from search.layout import BEST_CONFIG_FILE, TEST_METRICS_FILE, TRIAL_LOG_FILE
from search.spec import SearchSpec
from search.trial_config import trial_threads
from search.winner_eval import seed_folder


def _train_seed(raw: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """One repeated run of the winner (a Ray task): full budget, evaluated on the test split."""
    from detr_core.train import train_run
    from search.trial_output import output_to_file

    with output_to_file(Path(output_dir) / TRIAL_LOG_FILE):  # its output, as a trial's
        config = run_config_from_dict(raw, source=f"final seed {raw['seed']}")
        result = train_run(config, output_dir)
    return result.test_metrics or {}


def run_final_seeds(experiment_dir: Path, spec: SearchSpec, data: dict[str, Any],
                    k: int) -> list[dict[str, Any]]:
    """Retrain the winner with K seeds in parallel Ray tasks; test metrics per seed on disk."""
    import ray

    from detr_core.evaluate import write_report

    best = load_yaml_mapping(experiment_dir / BEST_CONFIG_FILE)
    best["data"] = data
    cpus, gpus = spec.resources.cpus_per_trial, spec.resources.gpus_per_trial
    best["num_threads"] = best.get("num_threads") or trial_threads(cpus)
    first_seed = int(best["seed"])
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus)(_train_seed)
    futures, folders = [], []
    for seed in range(first_seed, first_seed + k):
        folder = seed_folder(experiment_dir, seed)
        shutil.rmtree(folder, ignore_errors=True)
        folders.append(folder)
        futures.append(remote.remote({**best, "seed": seed}, str(folder)))
    print(f"retraining the winner with {k} seeds: {[f.name for f in folders]}", flush=True)
    metrics = ray.get(futures)
    for folder, values in zip(folders, metrics, strict=True):
        write_report(values, folder / TEST_METRICS_FILE)
    return metrics
