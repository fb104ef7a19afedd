"""What wrapping a run as a Ray Tune trial costs: speed, and start-up with reused actors.

    python benchmarks/trainable_overhead.py [--steps 400]     # report -> results/benchmarks/

Side by side in one run, on the embedded default (one thread each, evaluation every 100
steps, no test evaluation):

- the same run bare (`detr_core.train.train_run` in a fresh process) and as a trial of
the real
  function trainable (`search.trial.trainable.train_detr` in a `Tuner`, reporting every evaluation
  with its best-step checkpoint, output redirected to `trial.log`): optimizer steps/s between
  the first and the last evaluation (evaluations included in both), bare runs before and after
  the trials, averaged; the ratio trial / bare;
- trial start -> first optimizer step: from Tune's `on_trial_start` (driver clock) to the
  `first_step_time` the trial reports; two trials one after the other on one reused actor, so
  the second shows what actor reuse saves (the first pays the imports of torch and
  transformers).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "results" / "benchmarks"


def run_config(steps: int) -> dict[str, Any]:
    from detr_core.config.run_config import (
        apply_overrides,
        load_default_run_config,
        run_config_to_dict,
    )

    return apply_overrides(run_config_to_dict(load_default_run_config()), {
        "training_args.max_steps": steps, "training_args.logging_steps": 100,
        "num_threads": 1})


def _bare(raw: dict[str, Any], queue: mp.Queue) -> None:
    from detr_core.config.run_config import run_config_from_dict
    from detr_core.train import train_run

    class Clock:
        def __init__(self) -> None:
            self.points: list[tuple[int, float]] = []

        def on_evaluation(self, event: Any) -> None:
            self.points.append((event.step, time.perf_counter()))

    clock = Clock()
    with tempfile.TemporaryDirectory() as folder:
        train_run(run_config_from_dict(raw), folder, listeners=[clock], evaluate_test=False)
    (s0, t0), (s1, t1) = clock.points[0], clock.points[-1]
    queue.put((s1 - s0) / (t1 - t0))


def bare_steps_per_s(raw: dict[str, Any]) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_bare, args=(raw, queue))
    process.start()
    rate = queue.get()
    process.join()
    return rate


def trials(raw: dict[str, Any]) -> list[dict[str, float]]:
    """Two trials of the real trainable, one after the other on one reused actor."""
    import ray
    from ray import tune

    from search.trial.node_data import data_record
    from search.trial.trainable import train_detr

    starts: dict[str, float] = {}

    class StartClock(tune.Callback):
        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any):
            starts[trial.trial_id] = time.time()

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        with tempfile.TemporaryDirectory() as folder:
            data = data_record(raw, "benchmark", on_cluster=False)
            trainable = tune.with_resources(tune.with_parameters(
                train_detr, base=raw, space={"seed": raw["seed"]}, data=data,
                metric="eval_loss_bbox"), {"cpu": 1})
            tuner = tune.Tuner(
                trainable, param_space={"seed": tune.grid_search([raw["seed"], raw["seed"]])},
                tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
                run_config=tune.RunConfig(name="overhead", storage_path=folder, verbose=0,
                                          callbacks=[StartClock()]))
            grid = tuner.fit()
            found = []
            for result in sorted(grid, key=lambda r: starts[r.metrics["trial_id"]]):
                history = result.metrics_dataframe
                steps = history["step"].tolist()
                seconds = history["time_this_iter_s"].tolist()
                found.append({
                    "steps_per_s": (steps[-1] - steps[0]) / sum(seconds[1:]),
                    "start_to_first_step_s": history["first_step_time"].iloc[0]
                    - starts[result.metrics["trial_id"]],
                })
            return found
    finally:
        ray.shutdown()


def render(report: dict[str, Any]) -> str:
    """The report: the ratio over both trials, and per trial (fresh actor, reused actor)."""
    bare = statistics.fmean(report["bare_steps_per_s"])
    fresh, reused = report["trial_steps_per_s"]
    spread = abs(report["bare_steps_per_s"][0] - report["bare_steps_per_s"][1]) / bare
    return "\n".join([
        "# Trainable overhead", "",
        f"`python benchmarks/trainable_overhead.py --steps {report['steps']}` on "
        f"{report['machine']}: the embedded default, 1 thread, evaluation every 100 steps.", "",
        "| | optimizer steps/s (first to last evaluation) | / bare mean |", "| --- | --- | --- |",
        f"| bare `detr_core` run, before the trials | {report['bare_steps_per_s'][0]} | |",
        f"| bare `detr_core` run, after the trials | {report['bare_steps_per_s'][1]} | |",
        f"| Tune trial 1 (fresh actor, Ray just started) | {fresh} | {fresh / bare:.2f} |",
        f"| Tune trial 2 (the same actor, reused) | {reused} | {reused / bare:.2f} |", "",
        f"Ratio trial / bare (both trials): **{report['ratio_trial_over_bare']}** (target >= "
        f"0.97); the two bare runs differ by {spread:.1%}, the noise of one such measurement.",
        "",
        "Trial start (Tune's `on_trial_start`) to its first optimizer step: fresh actor "
        f"{report['start_to_first_step_s']['fresh_actor']} s, reused actor "
        f"**{report['start_to_first_step_s']['reused_actor']} s** (target <= 3 s).", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args(argv)
    raw = run_config(args.steps)
    bare = [bare_steps_per_s(raw)]
    tuned = trials(raw)
    bare.append(bare_steps_per_s(raw))
    bare_rate = statistics.fmean(bare)
    trial_rate = statistics.fmean(t["steps_per_s"] for t in tuned)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "steps": args.steps,
        "bare_steps_per_s": [round(b, 3) for b in bare],
        "trial_steps_per_s": [round(t["steps_per_s"], 3) for t in tuned],
        "ratio_trial_over_bare": round(trial_rate / bare_rate, 3),
        "start_to_first_step_s": {"fresh_actor": round(tuned[0]["start_to_first_step_s"], 2),
                                  "reused_actor": round(tuned[1]["start_to_first_step_s"], 2)},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "trainable_overhead.json").write_text(json.dumps(report, indent=2) + "\n")
    text = render(report)
    (OUT / "trainable_overhead.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
