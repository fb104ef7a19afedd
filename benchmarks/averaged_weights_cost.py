"""What the extra averaged weights (`ema: {}`) cost a search trial, and what they buy.

    python benchmarks/averaged_weights_cost.py [--steps 500] [--rounds 3]

A shipped trial (search_spaces/iou.yaml's base with a fixed learning rate, one thread,
evaluation every `logging_steps` as shipped, no test evaluation) trained side by side in one
process with and without `ema: {}`, alternating, after one short warm-up run that pays the
imports: wall time per run and the ratio. The runs share the seed, so the training itself is
the same (the raw weights' last val loss is printed to show it); the difference is the EMA update at
every step, its evaluation at every evaluation and its copy in every checkpoint.

What the averaged weights buy is read from the schedule-free learning-curve grid
(`benchmarks/data/learning_curves_schedule_free.jsonl`: the shipped optimizer, which already
evaluates a running average of its iterates): final test mAP@.5 of the raw weights against
the EMA weights, per configuration and seed, and the best configuration's mean either way.
Written to `results/benchmarks/averaged_weights_cost.{md,json}`.
"""

from __future__ import annotations

import argparse
import copy
import json
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
SPACE = ROOT / "search_spaces" / "iou.yaml"
GRID = ROOT / "benchmarks" / "data" / "learning_curves_schedule_free.jsonl"
LEARNING_RATE = 2e-3


def trial_config(steps: int, ema: bool) -> dict[str, Any]:
    """The shipped space's trial base at a fixed learning rate, `steps` long, with or without
    the averaged weights."""
    from detr_core.config.run_config import apply_overrides
    from search.space.spec import load_search_spec

    raw = apply_overrides(copy.deepcopy(load_search_spec(SPACE).base), {
        "training_args.max_steps": steps, "training_args.learning_rate": LEARNING_RATE,
        "training_args.metric_for_best_model": "eval_map_50",
        "training_args.greater_is_better": True, "num_threads": 1})
    raw.pop("ema", None)
    if ema:
        raw["ema"] = {}
    return raw


def timed_run(raw: dict[str, Any]) -> tuple[float, float, float | None]:
    """Wall and CPU seconds of one run (CPU time: this machine is a VM whose wall times
    drift with its host's load) and the raw weights' val loss at its last evaluation (the
    same with and without averaged weights when the training is the same)."""
    import contextlib
    import io

    from detr_core.config.run_config import run_config_from_dict
    from detr_core.train import train_run

    config = run_config_from_dict(raw)
    started, cpu_started = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(io.StringIO()):
        result = train_run(config, folder, evaluate_test=False)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    losses = [row["eval_loss"] for row in result.history if "eval_loss" in row]
    return wall, cpu, (round(float(losses[-1]), 5) if losses else None)


def grid_effect(path: Path = GRID) -> dict[str, Any]:
    """Final test mAP@.5, raw vs averaged weights, over every run of the grid."""
    from benchmarks.replay import CurveTable

    pairs, by_config = [], {}
    for (key, _seed), curve in CurveTable.from_jsonl(path).curves.items():
        raw, ema = curve.test["map_50"][-1], curve.test["ema_map_50"][-1]
        pairs.append(raw - ema)
        by_config.setdefault(key, []).append((raw, ema))
    best_raw = max(statistics.fmean(r for r, _ in v) for v in by_config.values())
    best_ema = max(statistics.fmean(e for _, e in v) for v in by_config.values())
    return {"runs": len(pairs), "raw_higher": sum(d > 0 for d in pairs),
            "median_raw_minus_ema": round(statistics.median(pairs), 4),
            "best_config_raw": round(best_raw, 4), "best_config_ema": round(best_ema, 4)}


def render(result: dict[str, Any], argv: list[str]) -> str:
    walls, cpus = result["walls"], result["cpu"]
    grid = result["grid"]
    lines = [
        "# Averaged weights on top of schedule-free AdamW: cost and effect", "",
        f"`python benchmarks/averaged_weights_cost.py {' '.join(argv)}`".replace(" `", "`")
        + f" on {platform.machine()}, {result['cpus']} cores: the shipped trial "
        f"(search_spaces/iou.yaml's base, lr {LEARNING_RATE:g}, {result['steps']} steps, "
        f"evaluation every {result['logging_steps']} steps, 1 thread), alternating in one "
        "process after a warm-up run.", "",
        "| run | wall (s) per run | mean | CPU (s) per run | mean | last val loss (raw "
        "weights) |", "| --- | --- | --- | --- | --- | --- |"]
    for name in ("without", "with"):
        lines.append(f"| {name} `ema: {{}}` | "
                     + ", ".join(f"{w:.1f}" for w in walls[name])
                     + f" | {statistics.fmean(walls[name]):.1f} | "
                     + ", ".join(f"{w:.1f}" for w in cpus[name])
                     + f" | {statistics.fmean(cpus[name]):.1f} | {result['loss'][name]} |")
    pairs = [w / wo for w, wo in zip(cpus["with"], cpus["without"], strict=True)]
    lines += ["", f"With / without: **{result['cpu_ratio']:.3f}x** the CPU time "
              f"({result['ratio']:.3f}x the wall time); per round "
              + ", ".join(f"{r:.2f}" for r in pairs)
              + f" (slower with the EMA in {sum(r > 1 for r in pairs)} of {len(pairs)}: one "
              "run's time here drifts by more than the EMA costs, so read the mean, not one "
              "pair).", "",
              f"On the schedule-free grid ({grid['runs']} runs), "
              f"the raw (schedule-free averaged) weights end higher on test mAP@.5 than the "
              f"extra EMA on {grid['raw_higher']} of {grid['runs']} runs (median "
              f"{grid['median_raw_minus_ema']:+.4f}); the best configuration's mean "
              f"{grid['best_config_raw']:.3f} raw vs {grid['best_config_ema']:.3f} EMA. "
              "Rank correlation at the shipped rung (step 500) with the final test mAP@.5: "
              "results/benchmarks/rank_correlation.md.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the report from the saved JSON (no training)")
    args = parser.parse_args(argv)
    shown = [str(a) for a in (argv if argv is not None else sys.argv[1:])]
    if args.report_only:
        result = json.loads((args.out / "averaged_weights_cost.json").read_text())
        (args.out / "averaged_weights_cost.md").write_text(render(result, result["argv"]))
        return 0
    timed_run(trial_config(20, ema=True))  # imports, first model build
    walls: dict[str, list[float]] = {"without": [], "with": []}
    cpus: dict[str, list[float]] = {"without": [], "with": []}
    loss: dict[str, Any] = {}
    for _ in range(args.rounds):
        for name in ("without", "with"):
            wall, cpu, last = timed_run(trial_config(args.steps, ema=name == "with"))
            walls[name].append(round(wall, 2))
            cpus[name].append(round(cpu, 2))
            loss[name] = last
            print(f"{name} ema: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    logging_steps = trial_config(args.steps, ema=False)["training_args"].get("logging_steps")
    result = {"steps": args.steps, "rounds": args.rounds, "cpus": os.cpu_count(),
              "logging_steps": logging_steps, "walls": walls,
              "cpu": cpus, "loss": loss,
              "ratio": statistics.fmean(walls["with"]) / statistics.fmean(walls["without"]),
              "cpu_ratio": statistics.fmean(cpus["with"]) / statistics.fmean(cpus["without"]),
              "grid": grid_effect(), "argv": shown}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "averaged_weights_cost.md").write_text(render(result, shown))
    (args.out / "averaged_weights_cost.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out / 'averaged_weights_cost.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
