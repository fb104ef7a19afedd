"""Wire one search: prepare the data, start (or join) Ray, fit the `Tuner`, export.

STORAGE/NAME (a path or a URI) is the Ray experiment folder itself: trial folders, the Optuna
journal, `search_spec.yaml`, the data record each trial prepares its dataset from, the export.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detr_core.config.metric_names import SELECTABLE_EVAL_METRICS
from detr_core.files.errors import UserInputError
from search.cluster.local_cluster import LocalCluster, check_trials_fit
from search.cluster.ray_internals import restored_run_config
from search.results.warm_trials import WarmStartRecord, write_warm_start_record
from search.resume.state import repair_saved_state
from search.running.cli import DEFAULT_DASHBOARD_PORT, DEFAULT_STORAGE, experiment_path
from search.running.interrupt import SearchInterrupts, clear_interrupt_record, record_interruption
from search.space.budget import default_max_concurrent
from search.space.spec import SearchSpec, to_tune_param_space, write_spec_file
from search.store.layout import INTERRUPTED_FILE, PREPARED_DATA_FILE, SPEC_FILE
from search.store.storage import (
    ExperimentPath,
    StorageUnavailable,
    folder_has_entries,
    is_uri,
    location,
    read_json,
    remove_tree,
    split_uri,
    unanswered,
    write_text_atomic,
)
from search.trial.node_data import data_record, revalidate_record


@dataclass
class SearchOptions:
    """Driver settings that are not part of the space file."""

    storage: str = DEFAULT_STORAGE
    address: str | None = None
    resume: bool = False
    dashboard: bool = True
    dashboard_port: int = DEFAULT_DASHBOARD_PORT
    verbose: int = 0  # 0: our progress only; 1: Ray Tune's tables and Ray's logs too
    time_budget_s: float | None = None
    report_dir: Path | None = None  # a local copy of REPORT.md and its plots
    interrupts: SearchInterrupts = field(default_factory=SearchInterrupts)
    resume_command: str = ""  # printed and recorded when the search is interrupted


def auth_token_path() -> Path:
    """Where Ray keeps the dashboard token (`RAY_AUTH_TOKEN_PATH` or ~/.ray/auth_token)."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))


def quiet_libraries(verbose: int) -> None:
    """Keep Optuna's and Tune's chatter off the console unless asked for (`-v`)."""
    # every new best step is a checkpoint: Tune's "snapshotting too often" warning is noise
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if verbose:
        return
    # Tune's new output prints an experiment box at any verbosity; the classic one at 0 nothing
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # a failed trial is one line of ours (traceback in its error.txt), not ~60 lines of Tune's
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in Journal..."
    for name in ("ray", "ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # a storage that does not answer for a while: Tune logs each failed sync of its state
    # with a traceback and tries again at the next one; one line each is enough
    for name in ("ray.tune.execution.experiment_state", "ray.train._internal.storage"):
        logging.getLogger(name).addFilter(_without_traceback)


def _without_traceback(record: logging.LogRecord) -> bool:
    """A log record's exception as the end of its one line, not as a traceback."""
    if record.exc_info and record.exc_info[1] is not None:
        text = " ".join(str(record.exc_info[1]).split())[:160]
        record.msg, record.args = f"{record.getMessage().strip()} {text}", ()
        record.exc_info, record.exc_text = None, None
    return True


def start_ray(options: SearchOptions, cluster: LocalCluster | None = None) -> None:
    """Join `options.address` or start a local Ray (watched by `cluster`) and its dashboard."""
    import ray

    quiet = {"log_to_driver": bool(options.verbose),
             "logging_level": logging.INFO if options.verbose else logging.ERROR}
    if options.address:
        context = ray.init(address=options.address, **quiet)
    else:
        context = ray.init(include_dashboard=options.dashboard, dashboard_host="127.0.0.1",
                           dashboard_port=options.dashboard_port, **quiet)
        if cluster is not None:
            cluster.started(options.interrupts)
    url = getattr(context, "dashboard_url", None)
    if options.dashboard and url:
        line = f"Ray dashboard: {url if url.startswith('http') else f'http://{url}'}"
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
            line += (f"  (token authentication: log in with the token in {auth_token_path()}; "
                     "`ray get-auth-token` prints it)")
        print(line, flush=True)


def build_searcher(spec: SearchSpec, experiment_dir: ExperimentPath, max_concurrent: int,
                   warm_start: WarmStartRecord | None = None) -> tuple[Any, Any]:
    """(the searcher handed to Tune, the Optuna searcher inside it), with the spec's sampler."""
    from ray.tune.search import ConcurrencyLimiter

    from search.space.samplers import build_sampler
    from search.store.study_journal import journal_storage
    from search.trial.searcher import AshaAwareOptunaSearch

    searcher = AshaAwareOptunaSearch(
        sampler=build_sampler(spec.searcher.sampler, spec.searcher.sampler_options,
                              spec.searcher.seed, spec.searcher.n_startup_trials),
        study_name=spec.name, storage=journal_storage(experiment_dir),
        max_t=spec.scheduler.max_t, first_points=spec.searcher.points_to_evaluate,
        warm_start=[t.optuna_trial(spec.metric, spec.searched_keys())
                    for t in (warm_start.trials if warm_start else [])],
    )
    return ConcurrencyLimiter(searcher, max_concurrent=max_concurrent), searcher


def fit(tuner: Any, spec: SearchSpec, where: str, folder: ExperimentPath) -> None:
    """`tuner.fit()` of the experiment at `where` (`folder`), then data-parallel trials' Train
    run folders swept (`remove_train_runs`). Tune reads the experiment back from storage as it
    ends: a storage that does not answer then stops the search resumable
    (`StorageUnavailable`: one line and the resume command), not with pyarrow's traceback."""
    try:
        tuner.fit()
    except OSError as exc:
        if not unanswered(exc):
            raise
        said = " ".join(str(exc).split())[:160]
        raise StorageUnavailable(f"storage {where} did not answer as the trials ended "
                                 f"({said})") from None
    if spec.resources.workers_per_trial > 1:
        from search.trial.data_parallel import remove_train_runs

        remove_train_runs(folder)


def trials_at_once(spec: SearchSpec, runs: int) -> int:
    """`max_concurrent`, else as many of `runs` as the cluster's CPUs and GPUs hold (the only
    cap for data-parallel trials, whose drivers book no CPU)."""
    import ray

    resources = ray.cluster_resources()
    return spec.max_concurrent or default_max_concurrent(
        spec.resources.cpus_per_trial, spec.resources.gpus_per_trial, runs,
        resources.get("CPU", 1), resources.get("GPU", 0))


def trial_resources(spec: SearchSpec) -> Any:
    """What Tune books for one trial: its process's CPUs / GPUs, or for a data-parallel trial
    only its driver (`search.trial.data_parallel.driver_resources`; the workers are Train's)."""
    if spec.resources.workers_per_trial > 1:
        from search.trial.data_parallel import driver_resources

        return driver_resources()
    return {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial}


def build_tuner(spec: SearchSpec, options: SearchOptions, data: dict[str, Any],
                callbacks: list[Any] | None = None, stop: Any = None,
                warm_start: WarmStartRecord | None = None) -> tuple[Any, Any]:
    """(the `Tuner`, new or restored with `options.resume`; its Optuna searcher, None after a
    restore). A new one in a finished search's folder reopens its journal: TPE sees every trial."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from search.trial.trainable import data_parallel_workers, train_detr

    path = experiment_path(options.storage, spec.name)
    workers = data_parallel_workers(spec.resources, path)
    trainable = tune.with_resources(
        tune.with_parameters(train_detr, base=spec.base, space=spec.space, data=data,
                             metric=spec.metric, recipe=spec.recipe, workers=workers),
        trial_resources(spec))
    if options.resume:
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
        # the first session's callbacks and stopper were pickled with it: this session's instead
        run_config = restored_run_config(tuner)
        run_config.callbacks, run_config.stop = callbacks, stop
        run_config.verbose = options.verbose
        return tuner, None
    max_concurrent = trials_at_once(spec, spec.num_samples)
    scheduler = ASHAScheduler(time_attr="step", max_t=spec.scheduler.max_t,
                              grace_period=spec.scheduler.grace_period,
                              reduction_factor=spec.scheduler.reduction_factor)
    search_alg, optuna_search = build_searcher(spec, location(path), max_concurrent, warm_start)
    tuner = tune.Tuner(
        trainable,
        param_space=to_tune_param_space(spec),
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, num_samples=spec.num_samples,
            search_alg=search_alg, scheduler=scheduler,
            # a trial worker imports torch + transformers once (~10 s on 2 cores), not per trial;
            # a data-parallel trial's actor must end with it: its Train job goes with it
            reuse_actors=workers is None,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=split_uri(path)[0] if is_uri(path) else str(Path(path).parent),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=spec.metric,
                checkpoint_score_order=spec.mode),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            # the trial's working folder holds its trial.log: copied into its result folder
            sync_config=tune.SyncConfig(sync_artifacts=True),
            callbacks=callbacks, stop=stop, verbose=options.verbose,
        ),
    )
    return tuner, optuna_search


def _record_budget_cut(experiment_dir: ExperimentPath, options: SearchOptions, tuner: Any,
                       optuna_search: Any, progress: Any) -> None:
    """The trials the time budget cut: recorded on disk and in the study, and said."""
    from search.running.time_budget import write_budget_record

    results = {r.metrics.get("trial_id"): r for r in tuner.get_results() if r.metrics}
    if progress is not None:
        cut = progress.running_trial_ids()
        progress.mark_cut(cut)
    else:  # -v: no console callback; a trial whose last result is not `done` was cut
        cut = [tid for tid, r in results.items() if tid and not r.metrics.get("done")
               and r.error is None]
    write_budget_record(experiment_dir, options.time_budget_s or 0.0, cut)
    if optuna_search is not None:
        for trial_id in cut:  # Tune does not tell the searcher about trials it stops this way
            last = results[trial_id].metrics if trial_id in results else None
            optuna_search.on_trial_complete(trial_id, result=last)
    print(f"time budget of {options.time_budget_s:g} s reached: {len(cut)} "
          "running trial(s) cut, exporting what finished", flush=True)


def read_continuation(experiment_dir: ExperimentPath) -> tuple[int, bool]:
    """(trials there, whether Tune has unfinished ones to restore), read before writing anything."""
    from search.results.reading import find_trial_dirs
    from search.running.cli import unfinished_reason

    record = read_json(experiment_dir / INTERRUPTED_FILE)
    # stopped in the finalists stage: the search itself had ended (the stage goes on)
    interrupted = isinstance(record, dict) and record.get("stage", "search") == "search"
    return (len(find_trial_dirs(experiment_dir)),
            interrupted or unfinished_reason(experiment_dir) is not None)


def check_same_search(experiment_dir: ExperimentPath, spec: SearchSpec, where: str) -> None:
    """Refuse a `--resume` whose space file no longer describes the search it continues."""
    from search.lineage.warm_start import search_difference
    from search.space.spec import read_spec_file

    if not (experiment_dir / SPEC_FILE).is_file():
        return
    difference = search_difference(read_spec_file(experiment_dir), spec)
    if difference:
        raise UserInputError(f"--resume continues the search as it was, but {difference}; "
                             "start a new search (with --warm-start from this one) instead",
                             source=where)


def continue_finished(spec: SearchSpec, existing: int) -> SearchSpec:
    """The spec of a session adding trials to a finished search: `num_samples` those to add,
    the sampler seed moved on by the trials there (not the first session's draws)."""
    seed = spec.searcher.seed
    searcher = spec.searcher.model_copy(update={"seed": None if seed is None else seed + existing})
    return dataclasses.replace(spec, num_samples=spec.num_samples - existing, searcher=searcher)


def run_search(spec: SearchSpec, options: SearchOptions,
               warm_start: WarmStartRecord | None = None) -> ExperimentPath:
    """Run and export the search; the experiment folder. `options.resume` restores an
    interrupted search first, then a further session adds trials `spec.num_samples` lacks."""
    started = time.time()
    quiet_libraries(options.verbose)
    import ray
    from ray import tune

    path = experiment_path(options.storage, spec.name)
    experiment_dir = location(path)
    if options.resume and not tune.Tuner.can_restore(path):
        raise UserInputError("no experiment to resume there", source=path)
    if not options.resume and folder_has_entries(experiment_dir):
        raise UserInputError(f"experiment {spec.name!r} exists; pass --resume to continue it "
                             "or --name for a new one", source=path)
    if options.resume and warm_start is not None:
        raise UserInputError("--warm-start seeds a new search; a resumed one keeps its study",
                             source=path)
    existing, unfinished = read_continuation(experiment_dir) if options.resume else (0, False)
    if options.resume:
        check_same_search(experiment_dir, spec, path)
    LocalCluster.end_orphans_of(path)
    if options.resume:  # after end_orphans_of: no killed session's copy is still writing
        for note in repair_saved_state(experiment_dir):
            print(f"resume: {note}", flush=True)
    record = experiment_dir / PREPARED_DATA_FILE
    if options.resume and record.is_file():
        # the files may have changed since the first session: checked again (COCO data)
        data = revalidate_record(json.loads(record.read_text()), spec.base, str(record),
                                 on_cluster=bool(options.address))
    else:
        data = data_record(spec.base, str(spec.source), on_cluster=bool(options.address))
    try:
        experiment_dir.mkdir(parents=True, exist_ok=True)
        write_spec_file(spec, experiment_dir)
        write_text_atomic(record, json.dumps(data, indent=2))
        if warm_start is not None:
            write_warm_start_record(experiment_dir, warm_start)
        clear_interrupt_record(experiment_dir)
    except OSError as exc:  # no such bucket, no credentials, a read-only folder
        raise UserInputError(f"cannot write there: {' '.join(str(exc).split())}",
                             source=path) from None
    sessions = ["new"] if not options.resume else ["restore", "more"] if unfinished else ["more"]
    if options.resume and not unfinished and spec.num_samples <= existing:
        print(f"{spec.name} holds {existing} trial(s) and asks for {spec.num_samples}: nothing "
              f"to run (--num-samples N above {existing} adds trials); "
              + ("on to the finalists" if spec.finalists.on else "exporting again"), flush=True)
        sessions = []
    interrupts = options.interrupts
    needs_ray = bool(sessions) or spec.finalists.on
    cluster = None if options.address or not needs_ray else LocalCluster(path)
    try:
        if needs_ray:
            start_ray(options, cluster)
            interrupts.install()  # again: ray.init replaces the SIGTERM handler
            try:
                check_trials_fit(spec, joined=bool(options.address))
            except UserInputError:
                if not options.resume:  # a new experiment: nothing of it is left behind
                    remove_tree(experiment_dir)
                raise
        from search.results.reading import find_trial_dirs
        from search.results.tensorboard_hparams import HParamsLoggerCallback
        from search.running.console import SearchProgress
        from search.running.time_budget import TimeBudget

        budget = TimeBudget(options.time_budget_s, start=started) if options.time_budget_s else None
        for session in sessions:
            session_spec, session_options = spec, options
            if session == "more":
                existing = len(find_trial_dirs(experiment_dir))
                if spec.num_samples <= existing:
                    break  # the restored session reached num_samples
                session_spec = continue_finished(spec, existing)
                session_options = dataclasses.replace(options, resume=False)
                print(f"continuing {spec.name}: {existing} trial(s) kept, "
                      f"{session_spec.num_samples} more proposed by TPE from all of them",
                      flush=True)
            progress = None if options.verbose else SearchProgress(session_spec,
                                                                   experiment=experiment_dir)
            callbacks = [HParamsLoggerCallback(spec.space, SELECTABLE_EVAL_METRICS, spec.base,
                                               spec.recipe), *([progress] if progress else [])]
            tuner, optuna_search = build_tuner(session_spec, session_options, data, callbacks,
                                               stop=budget, warm_start=warm_start)
            with interrupts.tune_loop():
                fit(tuner, spec, path, experiment_dir)
            if interrupts.interrupted:
                record_interruption(experiment_dir, interrupts, progress, options.resume_command)
            if budget is not None and budget.reached:
                _record_budget_cut(experiment_dir, options, tuner, optuna_search, progress)
            if interrupts.interrupted or (budget is not None and budget.reached):
                break
        from search.results.export import copy_report, export_experiment

        budget_spent = budget is not None and budget.reached
        finalists = spec.finalists.on and not interrupts.interrupted and not budget_spent
        # interrupted: export what is there now, without the (possibly long) test evaluation;
        # the finalists' winner replaces the search's: its test evaluation would be wasted
        summary = export_experiment(experiment_dir, evaluate_winner=not interrupts.interrupted
                                    and not finalists)
        if spec.finalists.on and not finalists:
            print("finalists skipped: " + ("the search was interrupted (--resume runs them)"
                                           if interrupts.interrupted
                                           else "the time budget is spent"), flush=True)
        elif finalists and summary.winner is not None:
            from search.running.finalists import run_finalists

            run_finalists(spec, path, experiment_dir, summary.trials, data, interrupts,
                          options.verbose, options.resume_command)
            summary = export_experiment(experiment_dir, evaluate_winner=not interrupts.interrupted)
        print(summary.describe(), flush=True)
        if options.report_dir is not None:
            print(f"report copy: {copy_report(summary, options.report_dir)}", flush=True)
    finally:
        if needs_ray:
            ray.shutdown()
        if cluster is not None:
            cluster.stop()
    return experiment_dir
