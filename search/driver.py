"""Wire one search: prepare the data, start (or join) Ray, fit the `Tuner`, export.

    spec = load_search_spec("search_spaces/iou.yaml")
    run_search(spec, SearchOptions(storage="results"))

The `Tuner` is `with_resources(with_parameters(train_detr, ...))` over the spec's flat dotted
space, searched by `AshaAwareOptunaSearch` (TPE, seeded) behind a `ConcurrencyLimiter`, and
scheduled by `ASHAScheduler(time_attr="step")`. Results go to STORAGE/NAME, which is the Ray
experiment folder itself: trial folders (with TensorBoard events), the Optuna study journal,
`search_spec.yaml`, then what `search.export` writes from them.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detr_core.config import SplitPaths, run_config_from_dict
from detr_core.data.prepare import prepare_data
from detr_core.errors import UserInputError
from detr_core.yaml_io import dump_yaml, load_yaml_mapping
from search.cli import experiment_path
from search.space import SearchSpec, default_max_concurrent, to_tune_param_space

SPEC_FILE = "search_spec.yaml"
PREPARED_DATA_FILE = "prepared_data.json"


@dataclass
class SearchOptions:
    """Driver settings that are not part of the space file."""

    storage: str = "results"
    address: str | None = None
    resume: bool = False
    dashboard: bool = True
    dashboard_port: int = 8265
    final_seeds: int = 0
    verbose: int = 1


def _is_uri(path: str) -> bool:
    return "://" in path


def _experiment_exists(path: str) -> bool:
    return not _is_uri(path) and any(Path(path).glob("experiment_state-*.json"))


def prepare_search_data(spec: SearchSpec) -> dict[str, Any]:
    """Generate or validate the dataset once; trials get its absolute COCO paths."""
    base = run_config_from_dict(spec.base, source=str(spec.source))
    prepared = prepare_data(base.data).as_data_config()

    def paths(split: SplitPaths | None) -> dict[str, str] | None:
        return None if split is None else {"annotations": split.annotations,
                                           "images": split.images}

    found = {"train": paths(prepared.train), "val": paths(prepared.val),
             "test": paths(prepared.test)}
    return {k: v for k, v in found.items() if v is not None}


def auth_token_path() -> Path:
    """Where Ray keeps the dashboard token (`RAY_AUTH_TOKEN_PATH` or ~/.ray/auth_token)."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))


def start_ray(options: SearchOptions) -> None:
    """Join `options.address` or start a local Ray with the dashboard on 127.0.0.1."""
    import ray

    if options.address:
        context = ray.init(address=options.address)
    else:
        context = ray.init(include_dashboard=options.dashboard, dashboard_host="127.0.0.1",
                           dashboard_port=options.dashboard_port)
    url = getattr(context, "dashboard_url", None)
    if options.dashboard and url:
        url = url if url.startswith("http") else f"http://{url}"
        line = f"Ray dashboard: {url}"
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
            line += (f"  (token authentication: log in with the token in {auth_token_path()}; "
                     "`ray get-auth-token` prints it)")
        print(line, flush=True)


def _searcher(spec: SearchSpec, experiment_dir: Path, max_concurrent: int) -> Any:
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    from search.searcher import AshaAwareOptunaSearch, journal_storage

    sampler = optuna.samplers.TPESampler(seed=spec.searcher.seed,
                                         n_startup_trials=spec.searcher.n_startup_trials)
    searcher = AshaAwareOptunaSearch(
        sampler=sampler, study_name=spec.name, storage=journal_storage(experiment_dir),
        max_t=spec.scheduler.max_t,
    )
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)


def build_tuner(spec: SearchSpec, options: SearchOptions, data: dict[str, Any]) -> Any:
    """The `Tuner` of a new search, or the restored one with `options.resume`."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from search.trainable import train_detr

    path = experiment_path(options.storage, spec.name)
    trainable = tune.with_resources(
        tune.with_parameters(train_detr, base=spec.base, space=spec.space, data=data,
                             metric=spec.metric),
        {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial},
    )
    if options.resume:
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    resources = ray.cluster_resources()
    max_concurrent = spec.max_concurrent or default_max_concurrent(
        spec, resources.get("CPU", 1), resources.get("GPU", 0))
    scheduler = ASHAScheduler(
        time_attr="step", max_t=spec.scheduler.max_t, grace_period=spec.scheduler.grace_period,
        reduction_factor=spec.scheduler.reduction_factor,
    )
    return tune.Tuner(
        trainable,
        param_space=to_tune_param_space(spec),
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, num_samples=spec.num_samples,
            search_alg=_searcher(spec, Path(path), max_concurrent), scheduler=scheduler,
            # a trial worker imports torch + transformers once (~10 s on 2 cores), not per trial
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=str(Path(path).parent) if not _is_uri(path) else path.rsplit("/", 1)[0],
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=spec.metric,
                checkpoint_score_order=spec.mode),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            verbose=options.verbose,
        ),
    )


def run_search(spec: SearchSpec, options: SearchOptions) -> Path:
    """Run (or resume) the search, export its results; returns the experiment folder."""
    # every new best step is a checkpoint: Tune's "snapshotting too often" warning is noise
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray
    from ray import tune

    path = experiment_path(options.storage, spec.name)
    if options.resume and not tune.Tuner.can_restore(path):
        raise UserInputError(f"{path}: no experiment to resume there")
    if not options.resume and _experiment_exists(path):
        raise UserInputError(f"{path}: experiment {spec.name!r} exists; pass --resume to "
                             "continue it or --name for a new one")
    experiment_dir = Path(path)
    if options.resume and (experiment_dir / PREPARED_DATA_FILE).is_file():
        data = json.loads((experiment_dir / PREPARED_DATA_FILE).read_text())
    else:
        data = prepare_search_data(spec)
    if not _is_uri(path):
        experiment_dir.mkdir(parents=True, exist_ok=True)
        dump_yaml(spec.to_yaml_dict(), experiment_dir / SPEC_FILE,
                  header="Written by search/run.py: the resolved search (read by export.py).")
        (experiment_dir / PREPARED_DATA_FILE).write_text(json.dumps(data, indent=2))
    start_ray(options)
    try:
        build_tuner(spec, options, data).fit()
        if _is_uri(path):
            print(f"results are in {path}; run `python search/export.py` on a local copy")
            return experiment_dir
        from search.export import export_experiment

        summary = export_experiment(experiment_dir)
        print(summary.describe(), flush=True)
        if options.final_seeds > 0 and summary.best_config_path is not None:
            run_final_seeds(experiment_dir, spec, data, options.final_seeds)
            print(export_experiment(experiment_dir).describe(), flush=True)
    finally:
        ray.shutdown()
    return experiment_dir


def _train_seed(raw: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """One repeated run of the winner (a Ray task): full budget, evaluated on the test split."""
    from detr_core.train import train_run

    config = run_config_from_dict(raw, source=f"final seed {raw['seed']}")
    result = train_run(config, output_dir)
    return result.test_metrics or {}


def run_final_seeds(experiment_dir: Path, spec: SearchSpec, data: dict[str, Any],
                    k: int) -> list[dict[str, Any]]:
    """Retrain the winner with K seeds in parallel Ray tasks; test metrics per seed on disk."""
    import ray

    from detr_core.evaluate import write_report

    best = load_yaml_mapping(experiment_dir / "best_config.yaml")
    best["data"] = data
    cpus, gpus = spec.resources.cpus_per_trial, spec.resources.gpus_per_trial
    best["num_threads"] = max(1, int(cpus))
    first_seed = int(best.get("seed", 0))
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus)(_train_seed)
    futures, folders = [], []
    for seed in range(first_seed, first_seed + k):
        folder = experiment_dir / "final_seeds" / f"seed_{seed}"
        shutil.rmtree(folder, ignore_errors=True)
        folders.append(folder)
        futures.append(remote.remote({**best, "seed": seed}, str(folder)))
    print(f"retraining the winner with {k} seeds: {[f.name for f in folders]}", flush=True)
    metrics = ray.get(futures)
    for folder, values in zip(folders, metrics, strict=True):
        write_report(values, folder / "test_metrics.json")
    return metrics
