"""Replaying recorded curves through the real Tune stack (`benchmarks.replay`).

A small hand-made table (3 learning rates x 2 IoU losses, one seed, evaluations at steps 10, 20,
30, 40) is replayed by a real `Tuner` with this project's `AshaAwareOptunaSearch` behind a
`ConcurrencyLimiter` and `ASHAScheduler(time_attr="step")`. Every trial reports exactly the
recorded curve of its grid point (a prefix of it when ASHA stops it), and the Optuna study says
PRUNED for the stopped trials and COMPLETE with the curve's best value for the finished ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.replay import CurveTable, config_key, replay_log, replay_trial, reported_steps

pytestmark = pytest.mark.slow

STEPS = [10, 20, 30, 40]
LOSS = {1e-4: [0.60, 0.55, 0.50, 0.45], 1e-3: [0.50, 0.35, 0.30, 0.20],
        1e-2: [0.90, 0.90, 0.88, 0.87]}
IOU_SHIFT = {"giou": 0.0, "diou": 0.01}


def _runs() -> list[dict[str, Any]]:
    runs = []
    for lr, losses in LOSS.items():
        for iou, shift in IOU_SHIFT.items():
            val = [round(v + shift, 4) for v in losses]
            runs.append({"params": {"training_args.learning_rate": lr, "iou_loss": iou},
                         "seed": 0, "steps": STEPS,
                         "val": {"loss_bbox": val, "map_50": [1 - v for v in val]},
                         "test": {"map_50": [0.5 - v / 2 for v in val]}})
    return runs


def test_snap_takes_the_nearest_grid_point_on_a_log_scale() -> None:
    table = CurveTable.from_runs(_runs())
    assert table.snap({"training_args.learning_rate": 2.5e-4, "iou_loss": "diou"}) == \
        {"training_args.learning_rate": 1e-4, "iou_loss": "diou"}
    assert table.snap({"training_args.learning_rate": 4e-4, "iou_loss": "giou"})[
        "training_args.learning_rate"] == 1e-3  # log-nearest, not linear-nearest
    assert table.budget == 40 and table.seeds == [0] and len(table.complete_points()) == 6
    with pytest.raises(KeyError):
        table.snap({"training_args.learning_rate": 1e-3, "iou_loss": "ciou"})


def test_a_replay_reports_only_the_evaluations_the_searched_run_makes() -> None:
    steps = [125, 250, 375, 500, 625, 750, 875, 1000, 1125, 1250, 1375, 1500]
    assert [steps[i] for i in reported_steps(steps, 250)] == [250, 500, 750, 1000, 1250, 1500]
    assert [steps[i] for i in reported_steps(steps, 400)] == [1500]  # the last one always
    assert reported_steps(steps, None) == list(range(12))


def test_replay_through_tune_reports_curves_and_tells_optuna(tmp_path: Path) -> None:
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter

    from search.store.study_journal import journal_storage
    from search.trial.searcher import AshaAwareOptunaSearch

    table = CurveTable.from_runs(_runs())
    searcher = AshaAwareOptunaSearch(
        sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=8), study_name="replay",
        storage=journal_storage(tmp_path), max_t=40)
    log = replay_log("eval_loss_bbox")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(replay_trial, table=table, seed=0,
                                                     seconds_per_step=0.002), {"cpu": 1}),
            param_space={"training_args.learning_rate": tune.loguniform(1e-4, 1e-2),
                         "iou_loss": tune.choice(["giou", "diou"])},
            tune_config=tune.TuneConfig(
                metric="eval_loss_bbox", mode="min", num_samples=8, reuse_actors=True,
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=1),
                scheduler=ASHAScheduler(time_attr="step", max_t=40, grace_period=10,
                                        reduction_factor=2)),
            run_config=tune.RunConfig(name="replay", storage_path=str(tmp_path / "runs"),
                                      verbose=0, callbacks=[log]))
        grid = tuner.fit()
    finally:
        ray.shutdown()

    by_trial: dict[str, list[Any]] = {}
    for report in log.reports:
        by_trial.setdefault(report.trial_id, []).append(report)
    assert len(by_trial) == 8
    stopped, finished = [], []
    for result in grid:
        history = result.metrics_dataframe
        point = json.loads(json.dumps(history["grid_point"].iloc[0]))
        params = table.snap(result.config)
        assert point == config_key(params)
        recorded = table.curve(params, 0)
        steps = history["step"].tolist()
        assert steps == list(recorded.steps[:len(steps)])  # a prefix of the recorded curve
        assert history["eval_loss_bbox"].tolist() == list(recorded.val["loss_bbox"][:len(steps)])
        assert history["total_steps"].tolist() == [40] * len(steps)
        (stopped if steps[-1] < 40 else finished).append((result.config, recorded))
    assert stopped and finished

    study = optuna.load_study(study_name="replay", storage=journal_storage(tmp_path))
    states = {}
    for trial in study.trials:
        lr, iou = trial.params["training_args.learning_rate"], trial.params["iou_loss"]
        states[(lr, iou)] = trial
    for config, recorded in stopped:
        trial = states[(config["training_args.learning_rate"], config["iou_loss"])]
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert sorted(trial.intermediate_values) == [
            s for s in recorded.steps if s <= max(trial.intermediate_values)]
    for config, recorded in finished:
        trial = states[(config["training_args.learning_rate"], config["iou_loss"])]
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.value == pytest.approx(min(recorded.val["loss_bbox"]))


def _replay_once(table: CurveTable, folder: Path, seed: int) -> list[tuple[int, str, int, int]]:
    """One replayed search, 2 trials at a time, on the simulated clock: (trial's rank of first
    appearance, grid point, step, simulated time) of every report, in the order Tune took them."""
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter

    from benchmarks.replay import simulated_clock
    from search.store.study_journal import journal_storage
    from search.trial.searcher import AshaAwareOptunaSearch

    searcher = AshaAwareOptunaSearch(
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=3), study_name="replay",
        storage=journal_storage(folder), max_t=40)
    clock = simulated_clock(concurrency=2, num_samples=8)
    log = replay_log("eval_loss_bbox", clock)
    tune.Tuner(
        tune.with_resources(tune.with_parameters(replay_trial, table=table, seed=0, clock=clock),
                            {"cpu": 1}),
        param_space={"training_args.learning_rate": tune.loguniform(1e-4, 1e-2),
                     "iou_loss": tune.choice(["giou", "diou"])},
        tune_config=tune.TuneConfig(
            metric="eval_loss_bbox", mode="min", num_samples=8, reuse_actors=True,
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=2),
            scheduler=ASHAScheduler(time_attr="step", max_t=40, grace_period=10,
                                    reduction_factor=2)),
        run_config=tune.RunConfig(name="replay", storage_path=str(folder / "runs"), verbose=0,
                                  callbacks=[log])).fit()
    rank: dict[str, int] = {}
    return [(rank.setdefault(r.trial_id, len(rank)), r.grid_point, r.step, r.simulated_time)
            for r in log.reports]


def test_replays_of_one_seed_are_identical_and_follow_the_simulated_clock(
        tmp_path: Path) -> None:
    """Two replays of one searcher seed, two trials at a time: the same reports in the same
    order (wall time decides nothing), in simulated-time order, trials interleaved."""
    import ray

    table = CurveTable.from_runs(_runs())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        first = _replay_once(table, tmp_path / "a", seed=5)
        second = _replay_once(table, tmp_path / "b", seed=5)
    finally:
        ray.shutdown()
    assert first == second
    assert len({trial for trial, *_ in first}) == 8
    times = [t for *_, t in first]
    assert times == sorted(times)
    # two trials run side by side: the first two reports are both trials' step 10
    assert [(trial, step, t) for trial, _, step, t in first[:2]] == [(0, 10, 10), (1, 10, 10)]
    stopped = [trial for trial in range(8)
               if max(step for tr, _, step, _ in first if tr == trial) < 40]
    assert stopped, "ASHA stopped nobody: the order of its decisions was not exercised"
