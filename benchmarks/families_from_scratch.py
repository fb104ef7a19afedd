"""How fast each DETR-family member learns the embedded task from random weights.

    python benchmarks/families_from_scratch.py                  # resume; 2 runs side by side
    python benchmarks/families_from_scratch.py --report-only    # rewrite the report
    python benchmarks/families_from_scratch.py --time-steps     # steps/s side by side

Every supported family's tiny preset (`detr_core.model.families`: one ~0.3 M-parameter ResNet
backbone for all, d_model 64) is trained from random weights on the embedded default data
(synthetic rectangles / ellipses / triangles, 1,000 train / 64 val / 128 test images at 96 px)
for 1,500 steps of batch 8 with the same optimizer for all (AdamW 1e-3, weight decay 1e-4,
clipping 0.1, no warm-up, backbone at the main rate, GIoU), one thread a run, 3 seeds. Val
and test are evaluated every 250 steps (`evaluation.test_during_training`); the report gives
mAP@.5, mAP, recall and precision (score threshold 0.5, each family's own scores) at steps
250 / 500 / 1,000 / 1,500, the mean +- std over seeds and the parameters. Steps/s are timed
apart (`--time-steps`, `benchmarks/step_timer.py`): one family at a time, one thread, the rest
of the machine idle, the families interleaved over 3 rounds (median), training steps only; the
curves' own wall times shared the two cores with another run and are not comparable.

Resumable: each finished run is appended to `benchmarks/data/families_from_scratch.jsonl` at
once and skipped on the next call; `--stop-after SECONDS` starts no new run after that long.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.run_pool import run_pool  # noqa: E402  (after the sys.path line above)
from detr_core.config.run_config import FamilyName  # noqa: E402

DATA_FILE = ROOT / "benchmarks" / "data" / "families_from_scratch.jsonl"
SPEED_FILE = ROOT / "benchmarks" / "data" / "families_from_scratch_speed.json"
REPORT = ROOT / "results" / "benchmarks" / "families_from_scratch.md"
FAMILIES = ("detr", "conditional_detr", "deformable_detr", "rt_detr", "rt_detr_v2", "d_fine")
SEEDS = (0, 1, 2)
STEPS = 1500
EVERY = 250
SHOWN_STEPS = (250, 500, 1000, 1500)
METRICS = ("map_50", "map", "recall", "precision")
assert set(FAMILIES) <= set(FamilyName.__args__)  # every family the config layer knows


def run_config(family: str, seed: int, cache_dir: str) -> dict[str, Any]:
    """The run of one (family, seed): everything stated, so no recipe fills a value."""
    return {
        "seed": seed,
        "num_threads": 1,
        "iou_loss": "giou",
        "backbone_lr_ratio": 1.0,
        "data": {"synthetic": {"num_train": 1000, "num_val": 64, "num_test": 128,
                               "image_size": 96, "seed": 0, "cache_dir": cache_dir}},
        "model": {"preset": "tiny", "family": family, "image_size": 96},
        "training_args": {"learning_rate": 1e-3, "weight_decay": 1e-4, "max_grad_norm": 0.1,
                          "optim": "adamw_torch_fused", "lr_scheduler_type": "constant",
                          "warmup_steps": 0, "max_steps": STEPS,
                          "per_device_train_batch_size": 8, "logging_steps": EVERY,
                          "metric_for_best_model": "eval_map_50",
                          "greater_is_better": True},
        "evaluation": {"test_during_training": True},
    }


def train_one(job: tuple[str, int, str]) -> dict[str, Any]:
    """Train one (family, seed) in this process; its curve, size and speed."""
    family, seed, cache_dir = job
    from detr_core.config.run_config import run_config_from_dict
    from detr_core.train import train_run

    config = run_config_from_dict(run_config(family, seed, cache_dir), source=family)
    started_at = commit()
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = train_run(config, out, evaluate_test=False)
        wall = time.perf_counter() - start
        from transformers import AutoModelForObjectDetection

        parameters = AutoModelForObjectDetection.from_pretrained(
            Path(out) / "best_model").num_parameters()
    eval_time = sum(float(v) for row in result.history for k, v in row.items()
                    if k.endswith("_runtime"))
    curve = [{k: v for k, v in row.items()
              if k == "step" or any(k == f"{p}_{m}" for p in ("eval", "test") for m in METRICS)}
             for row in result.history]
    return {"family": family, "seed": seed, "parameters": parameters,
            "steps_per_s": STEPS / max(wall - eval_time, 1e-9), "wall_s": wall,
            "curve": curve, "commit": started_at}


def time_steps(rounds: int = 3, steps: int = 60) -> dict[str, float]:
    """Median training steps/s of each family's preset, one thread, interleaved rounds."""
    from benchmarks.step_timer import steps_per_second

    seen: dict[str, list[float]] = {f: [] for f in FAMILIES}
    for _ in range(rounds):
        for family in FAMILIES:
            seen[family].append(steps_per_second(steps, threads=1, freeze_backbone=False,
                                                 model={"preset": "tiny", "family": family}))
    return {f: statistics.median(v) for f, v in seen.items()}


def commit() -> str:
    """The commit the code ran at (`-dirty`: with uncommitted changes on top)."""
    return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, text=True,
                          capture_output=True, check=False).stdout.strip()


def done_runs() -> list[dict[str, Any]]:
    if not DATA_FILE.is_file():
        return []
    return [json.loads(line) for line in DATA_FILE.read_text().splitlines() if line.strip()]


def mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


def write_report(runs: list[dict[str, Any]]) -> None:
    """The markdown report: one table per split, one row per family."""
    from detr_core.model.families import FAMILIES as TABLE

    lines = ["# DETR-family members from random weights on the embedded task", "",
             "Command: `python benchmarks/families_from_scratch.py` (data: "
             "`benchmarks/data/families_from_scratch.jsonl`). Tiny presets of "
             "`detr_core.model.families`, AdamW 1e-3 (weight decay 1e-4, clipping 0.1, constant, "
             "no warm-up), batch 8, 96 px, 1,500 steps, one thread a run (two runs side by side "
             "on 2 cores), GIoU. Each cell: mean +- std over the seeds run "
             f"({', '.join(map(str, SEEDS))}); metrics at score threshold 0.5 with each "
             "family's own scores. Steps/s: `--time-steps`, each family alone on an idle machine, "
             "one thread, 60 timed training steps of batch 8, median of 3 interleaved rounds "
             "(data: `benchmarks/data/families_from_scratch_speed.json`).", ""]
    by_family: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_family.setdefault(run["family"], []).append(run)
    speed = json.loads(SPEED_FILE.read_text()) if SPEED_FILE.is_file() else {}
    lines += ["| family | seeds | parameters | steps/s (1 thread, alone) | vs DETR |",
              "| --- | --- | --- | --- | --- |"]
    for family in FAMILIES:
        mine = by_family.get(family, [])
        rate = speed.get(family)
        shown = f"{rate:.1f}" if rate else "n/a"
        ratio = f"{rate / speed['detr']:.2f}x" if rate and speed.get("detr") else "n/a"
        if mine:
            lines.append(f"| {TABLE[family].title} | {len(mine)} | {mine[0]['parameters']:,} | "
                         f"{shown} | {ratio} |")
    for split, title in (("test", "Test split (128 images)"), ("eval", "Val split (64 images)")):
        lines += ["", f"## {title}", "",
                  "| family | metric | " + " | ".join(f"step {s:,}" for s in SHOWN_STEPS) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in SHOWN_STEPS) + " |"]
        for family in FAMILIES:
            mine = by_family.get(family, [])
            for metric in METRICS if mine else ():
                cells = []
                for step in SHOWN_STEPS:
                    values = [row[f"{split}_{metric}"] for run in mine for row in run["curve"]
                              if row["step"] == step and f"{split}_{metric}" in row]
                    cells.append(mean_std([v for v in values if v == v]))  # NaN: no detection
                lines.append(f"| {TABLE[family].title} | {metric} | " + " | ".join(cells) + " |")
    lines += ["", "Commits the runs were made at: "
              + ", ".join(sorted({r["commit"] for r in runs})) + "."]
    REPORT.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--stop-after", type=float, default=None)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--time-steps", action="store_true",
                        help="time each family's training steps alone (minutes), then report")
    args = parser.parse_args(argv)
    if args.time_steps:
        SPEED_FILE.write_text(json.dumps(time_steps(), indent=1) + "\n")
    elif not args.report_only:
        done = {(r["family"], r["seed"]) for r in done_runs()}
        cache = str(ROOT / ".cache" / "families_from_scratch")
        jobs = [(f, s, cache) for s in SEEDS for f in args.families if (f, s) not in done]
        from detr_core.config.run_config import run_config_from_dict
        from detr_core.data.prepare import prepare_data

        prepare_data(run_config_from_dict(run_config("detr", 0, cache)).data)  # once, cached

        def record(run: dict[str, Any]) -> None:
            DATA_FILE.parent.mkdir(parents=True, exist_ok=True)
            with DATA_FILE.open("a") as handle:
                handle.write(json.dumps(run) + "\n")
            print(f"{run['family']} seed {run['seed']}: {run['wall_s']:.0f} s, "
                  f"test map_50 {run['curve'][-1].get('test_map_50')}", flush=True)

        run_pool(train_one, jobs, args.jobs, args.stop_after, record)
    write_report(done_runs())
    print(f"report: {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
