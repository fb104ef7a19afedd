"""The finalists stage after a search (what and why: `search.results.finalists`): its own Tune
experiment in `<experiment>/finalists/`, a grid of configuration x seed trials run to the
search's `max_t`. The plan (`finalists.json`) is written before the first run, so `--resume`
finishes exactly the planned runs; each finished run is then evaluated once on the test split.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from search.cluster.ray_internals import restored_run_config
from search.results.finalists import (
    FinalistPlan,
    plan_finalists,
    read_finalists,
    read_plan,
    write_plan,
)
from search.results.reading import TrialRecord
from search.results.winner import model_folder, select_checkpoint
from search.running.interrupt import SearchInterrupts, record_interruption
from search.space.spec import SearchSpec
from search.store.layout import EVALUATION_LOG_FILE, FINALISTS_DIR, TEST_METRICS_FILE
from search.store.storage import (
    ExperimentPath,
    join_uri,
    local_copy,
    remove_tree,
    write_json_atomic,
)


def the_plan(experiment_dir: ExperimentPath, spec: SearchSpec,
             trials: list[TrialRecord]) -> FinalistPlan | None:
    """The plan of an earlier session of this stage, kept unless the search has since gained
    trials that change its configurations (`--num-samples` topped it up), else a new one."""
    plan = read_plan(experiment_dir)
    if plan is not None:
        again = plan_finalists(spec, trials, len(plan.configurations), len(plan.seeds))
        if again is not None and [c.source_trial for c in again.configurations] \
                != [c.source_trial for c in plan.configurations]:
            print("finalists: the search has trials the stage planned earlier did not know; "
                  "planning it anew", flush=True)
            remove_tree(experiment_dir / FINALISTS_DIR)
            write_plan(experiment_dir, again)
            return again
        if (len(plan.configurations), len(plan.seeds)) != (spec.finalists.top,
                                                           spec.finalists.seeds):
            print(f"finalists: keeping the stage planned earlier ({len(plan.configurations)} "
                  f"configuration(s) x {len(plan.seeds)} seeds)", flush=True)
        return plan
    plan = plan_finalists(spec, trials, spec.finalists.top, spec.finalists.seeds)
    if plan is not None:
        write_plan(experiment_dir, plan)
    return plan


def run_finalists(spec: SearchSpec, path: str, experiment_dir: ExperimentPath,
                  trials: list[TrialRecord], data: dict[str, Any], interrupts: SearchInterrupts,
                  verbose: int, resume_command: str) -> bool:
    """Plan (or continue) the stage, train its runs, evaluate them on the test split. False
    when a signal stopped it (recorded for `--resume`) or no trial of the search had a value."""
    plan = the_plan(experiment_dir, spec, trials)
    if plan is None:
        print("finalists: no trial of the search reported a value; no stage", flush=True)
        return False
    numbers = ", ".join(f"#{c.number} = trial {c.source_trial}" for c in plan.configurations)
    print(f"finalists: {len(plan.configurations)} configuration(s) ({numbers}) x seeds "
          f"{', '.join(map(str, plan.seeds))}: {plan.runs} run(s) of up to "
          f"{spec.scheduler.max_t} steps", flush=True)
    from search.running.driver import fit

    tuner, progress = _tuner(spec, path, experiment_dir, plan, data, verbose)
    with interrupts.tune_loop():
        fit(tuner, spec, path, experiment_dir / FINALISTS_DIR)
    if interrupts.interrupted:
        record_interruption(experiment_dir, interrupts, progress, resume_command, "finalists")
        return False
    pending = [r for r in read_finalists(experiment_dir, spec).runs
               if r.finished and r.test_metrics is None]
    if pending:  # one Ray task per run, with a trial's resources
        import ray

        remote = ray.remote(num_cpus=spec.resources.cpus_per_trial,
                            num_gpus=spec.resources.gpus_per_trial)(evaluate_run)
        print(f"finalists: evaluating {len(pending)} run(s) on the test split", flush=True)
        ray.get([remote.remote(run.trial, plan.run_config(run.number, run.seed), data,
                               spec.mode) for run in pending])
    return True


def _tuner(spec: SearchSpec, path: str, experiment_dir: ExperimentPath, plan: FinalistPlan,
           data: dict[str, Any], verbose: int) -> tuple[Any, Any]:
    """(the stage's `Tuner`, new or restored; its console callback or None with -v)."""
    from ray import tune

    from search.running.console import SearchProgress
    from search.running.driver import trial_resources, trials_at_once
    from search.trial.trainable import data_parallel_workers, train_finalist

    # the console shows a trial's configuration number and seed as its values
    shown = dataclasses.replace(
        spec, name=FINALISTS_DIR, num_samples=plan.runs, recipe={},
        space={"finalist": {"choice": [c.number for c in plan.configurations]},
               "seed": {"choice": list(plan.seeds)}})
    progress = None if verbose else SearchProgress(shown, experiment=experiment_dir / FINALISTS_DIR)
    callbacks = [progress] if progress else []
    where = join_uri(path, FINALISTS_DIR)
    trainable = tune.with_resources(
        tune.with_parameters(train_finalist, runs={c.number: c.config
                                                   for c in plan.configurations},
                             data=data, metric=spec.metric,
                             workers=data_parallel_workers(spec.resources, where)),
        trial_resources(spec))
    if tune.Tuner.can_restore(where):
        tuner = tune.Tuner.restore(where, trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
        # the first session's callbacks were pickled with it: this session's console instead
        run_config = restored_run_config(tuner)
        run_config.callbacks, run_config.verbose = callbacks, verbose
        return tuner, progress
    tuner = tune.Tuner(
        trainable,
        param_space={"finalist": tune.grid_search([c.number for c in plan.configurations]),
                     "seed": tune.grid_search(list(plan.seeds))},
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode,
                                    reuse_actors=spec.resources.workers_per_trial == 1,
                                    max_concurrent_trials=trials_at_once(spec, plan.runs)),
        run_config=tune.RunConfig(
            name=FINALISTS_DIR, storage_path=path,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=spec.metric,
                checkpoint_score_order=spec.mode),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            sync_config=tune.SyncConfig(sync_artifacts=True),
            stop={"step": spec.scheduler.max_t},  # the search's full budget, as ASHA's max_t
            callbacks=callbacks, verbose=verbose,
        ),
    )
    return tuner, progress


def evaluate_run(trial: TrialRecord, raw: dict[str, Any], data: dict[str, Any],
                 mode: str) -> dict[str, Any] | None:
    """One finished run's best checkpoint on the test split (a Ray task): `test_metrics.json`."""
    from detr_core.config.run_config import run_config_from_dict
    from detr_core.evaluate import evaluate_model
    from search.trial.node_data import data_section, prepare_on_node
    from search.trial.trainable import output_to_file

    chosen = select_checkpoint(trial, mode)
    if chosen is None:
        return None
    raw = {**raw, "data": data_section(data)}
    config = run_config_from_dict(raw, source=f"finalist run {trial.trial_id}")
    if not config.data.has_test_split:
        return None
    with local_copy(model_folder(*chosen), upload_back=True) as model_dir, \
            output_to_file(model_dir / EVALUATION_LOG_FILE):
        prepare_on_node(data, config.data)
        metrics = dict(evaluate_model(model_dir, config, split="test"))
    write_json_atomic(trial.path / TEST_METRICS_FILE, metrics)
    return metrics
