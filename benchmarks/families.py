"""The shipped pretrained checkpoints of three DETR families, fine-tuned on the embedded task.

    python benchmarks/families.py --recipes          # 1. lr grid of the checkpoints without one
    python benchmarks/families.py --write-recipes    # 2. their measured recipe.json
    python benchmarks/families.py --time-steps       # 3. steps/s, each checkpoint alone
    python benchmarks/families.py                    # 4. 3 seeds each at its recipe (resumes)
    python benchmarks/families.py --report-only      # rewrite the report

`builtin:tiny-shapes` (plain DETR), `builtin:tiny-shapes-d-fine` (D-FINE) and
`builtin:tiny-shapes-deformable` (Deformable DETR) were pretrained on the same synthetic task
(`python -m detr_core.pretrain`, stars / crosses / rings / pentagons). This benchmark says which
of them `make run` should search, on evidence fixed before it is measured:

1. Pretraining: each folder's `pretraining.json` (size, steps, wall time, val mAP@.5 curve).
2. Recipe grid (`--recipes`): a checkpoint without a measured recipe is fine-tuned at learning
   rates 5e-4, 1e-3, 2e-3 and 4e-3 (seed 0, val only); its recipe's rate is the one with the
   highest mean of the last two val mAP@.5 evaluations (`--write-recipes` writes it, with the
   backbone at the main rate, weight decay 0 and clipping 0.1, as tiny-shapes' recipe has).
3. Equal steps (the default action): every checkpoint, seeds 0, 1, 2, at its own recipe, all
   four values stated in the run so nothing is filled in; schedule-free AdamW (constant, no
   warm-up: the optimizer of `search_spaces/iou.yaml`), GIoU, batch 8, 96 px, the embedded
   default's data and augmentation, 600 steps (longer where a checkpoint needs more to reach
   the rule's B = 90 CPU-s at its timed steps/s: `run_length`, decided before any run), val
   and test evaluated every 50 steps, one thread a run. Steps/s are timed apart
   (`--time-steps`, `benchmarks/step_timer.py`: each checkpoint alone, one thread, 60 steps,
   median of 3 interleaved rounds), since the runs' own wall times share the two cores with
   another run.
4. The rule, committed before anything was measured:

   The checkpoint `make run` searches is the one with the highest mean val mAP@.5 (3 seeds)
   after B = 90 CPU-seconds of training, where a checkpoint's training CPU-seconds at step s
   are s divided by its steps/s (one thread, timed alone: `--time-steps`), and its val mAP@.5
   at B is that of its last evaluation at or before B. 90 CPU-seconds is about what the
   winning trial of an 8-trial ASHA search trains in 4 minutes on 2 cores (2 trials at once,
   one thread each, after about 40 s of Ray start-up). If the leader's margin is smaller than
   the larger of the two seed standard deviations, the faster checkpoint (more steps/s: more
   trials fit in the same minutes) is chosen. The test split plays no part.

The report (`results/benchmarks/families.md`) applies it and prints the verdict; B = 45 and
180 CPU-s are shown as information. Resumable: each finished run is appended to
`benchmarks/data/families.jsonl` at once and skipped on the next call; `--stop-after SECONDS`
starts no new run after that long. `--steps N --out DIR` is a smoke run of N steps whose
records and report go to DIR (the real table stays untouched).
"""

from __future__ import annotations

import argparse
import json
import math
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

from benchmarks.families_report import (  # noqa: E402
    BUDGET,
    METRICS,
    RECIPE_SOURCE,
    choose_learning_rate,
    recipe_json,
    write_report,
)
from benchmarks.run_pool import run_pool  # noqa: E402  (after the sys.path line above)

DATA_DIR = ROOT / "benchmarks" / "data"
REPORT = ROOT / "results" / "benchmarks" / "families.md"
BUILTIN = ROOT / "detr_core" / "builtin"
CACHE = ROOT / ".cache" / "families"
#: The shipped checkpoints compared (`builtin:<name>`).
CHECKPOINTS = ("tiny-shapes", "tiny-shapes-d-fine", "tiny-shapes-deformable")
#: The ones without a measured recipe: `--recipes` grids them.
RECIPE_GRID = ("tiny-shapes-d-fine", "tiny-shapes-deformable")
LEARNING_RATES = (5e-4, 1e-3, 2e-3, 4e-3)
GRID_SEED = 0
SEEDS = (0, 1, 2)
STEPS = 600
EVERY = 50
SHOWN_STEPS = (100, 200, 300, 600)
#: What `--recipes` trains with besides its learning rate: what the recipe it writes states.
GRID_RECIPE = {"backbone_lr_ratio": 1.0, "weight_decay": 0.0, "max_grad_norm": 0.1}


def data_section(cache_dir: str) -> dict[str, Any]:
    """The embedded default's synthetic data (`load_default_run_config()`), cached apart."""
    from detr_core.config.run_config import load_default_run_config

    synthetic = load_default_run_config().data.synthetic
    assert synthetic is not None  # the embedded default is synthetic
    return {"synthetic": {**synthetic.model_dump(), "cache_dir": cache_dir}}


def run_config(checkpoint: str, seed: int, recipe: dict[str, float], steps: int,
               cache_dir: str, test: bool) -> dict[str, Any]:
    """One run: everything stated (the recipe's four values included), so nothing is filled in.
    `test`: evaluate the test split at every evaluation too (never for the grid)."""
    every = EVERY if steps >= 2 * EVERY else max(1, steps // 2)
    return {
        "seed": seed,
        "num_threads": 1,
        "iou_loss": "giou",
        "freeze_backbone": False,
        "backbone_lr_ratio": recipe["backbone_lr_ratio"],
        "data": data_section(cache_dir),
        "model": {"checkpoint": f"builtin:{checkpoint}", "image_size": 96},
        "training_args": {"learning_rate": recipe["learning_rate"],
                          "weight_decay": recipe["weight_decay"],
                          "max_grad_norm": recipe["max_grad_norm"],
                          "optim": "schedule_free_adamw", "lr_scheduler_type": "constant",
                          "warmup_steps": 0, "max_steps": steps,
                          "per_device_train_batch_size": 8, "logging_steps": every,
                          "metric_for_best_model": "eval_map_50", "greater_is_better": True},
        "evaluation": {"test_during_training": test},
    }


Job = tuple[str, str, int, dict[str, float], int, str]  # kind, checkpoint, seed, recipe, ...


def train_one(job: Job) -> dict[str, Any]:
    """Train one run in this process; its record (curve, size, speed, commit)."""
    kind, checkpoint, seed, recipe, steps, cache_dir = job
    from detr_core.config.run_config import run_config_from_dict
    from detr_core.train import train_run

    raw = run_config(checkpoint, seed, recipe, steps, cache_dir, test=kind == "equal")
    config = run_config_from_dict(raw, source=f"{kind} {checkpoint}")
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
    return {"kind": kind, "checkpoint": checkpoint, "seed": seed, "steps": steps,
            "learning_rate": recipe["learning_rate"], "recipe": recipe,
            "parameters": parameters, "steps_per_s": steps / max(wall - eval_time, 1e-9),
            "wall_s": wall, "curve": curve, "commit": started_at}


def time_steps(checkpoints: list[str], rounds: int = 3, steps: int = 60) -> dict[str, float]:
    """Median training steps/s of each checkpoint, one thread, alone, interleaved rounds."""
    from benchmarks.step_timer import steps_per_second

    seen: dict[str, list[float]] = {name: [] for name in checkpoints}
    for _ in range(rounds):
        for name in checkpoints:
            seen[name].append(steps_per_second(
                steps, threads=1, freeze_backbone=False,
                model={"checkpoint": f"builtin:{name}", "image_size": 96}))
    return {name: statistics.median(values) for name, values in seen.items()}


def commit() -> str:
    """The commit the code ran at (`-dirty`: with uncommitted changes on top)."""
    return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, text=True,
                          capture_output=True, check=False).stdout.strip()


def read_runs(data_file: Path, steps: int) -> list[dict[str, Any]]:
    """The records of `data_file` of runs `steps` long (the real table: at least `STEPS`, as
    an equal-step run trains on to the rule's budget, `run_length`)."""
    if not data_file.is_file():
        return []
    runs = [json.loads(line) for line in data_file.read_text().splitlines() if line.strip()]
    if steps == STEPS:
        return [run for run in runs if run["steps"] >= steps]
    return [run for run in runs if run["steps"] == steps]


def run_length(steps: int, steps_per_s: float | None, name: str) -> int:
    """An equal-step run's max_steps: `steps`, or longer where the checkpoint needs more to
    reach the rule's budget B (`BUDGET` CPU-s at its timed steps/s): a fast checkpoint's curve
    must reach B, or the rule would read it before B. Decided before any run was made."""
    if steps != STEPS:
        return steps  # a smoke run
    if steps_per_s is None:
        raise SystemExit(f"builtin:{name}: no steps/s yet: run `python benchmarks/families.py "
                         "--time-steps` first (the runs' length follows from it)")
    needed = math.ceil(BUDGET * steps_per_s / EVERY) * EVERY
    return max(steps, needed)


def run_key(kind: str, checkpoint: str, seed: int, learning_rate: float) -> tuple[Any, ...]:
    """What identifies a run within one `--steps` (a record's or a job's)."""
    return kind, checkpoint, seed, float(learning_rate)


def present(names: list[str], builtin: Path) -> list[str]:
    """The checkpoints among `names` that exist, saying which are left out and why."""
    found = [name for name in names if (builtin / name / "config.json").is_file()]
    for name in sorted(set(names) - set(found)):
        print(f"builtin:{name}: no {builtin / name}/config.json yet (not pretrained): skipped",
              flush=True)
    return found


def grid_jobs(names: list[str], steps: int, cache: str) -> list[Job]:
    """The learning-rate grid of `names`: one seed, the recipe rule's settings."""
    return [("grid", name, GRID_SEED, {"learning_rate": lr, **GRID_RECIPE}, steps, cache)
            for name in names for lr in LEARNING_RATES]


def equal_jobs(names: list[str], steps: int, cache: str, speed: dict[str, float]
               ) -> list[Job]:
    """3 seeds of each checkpoint at its own recipe (one without a recipe is skipped), each
    `run_length` steps long."""
    from detr_core.model.recipes import RECIPE_KEYS, checkpoint_recipe

    jobs = []
    for name in names:
        recipe = checkpoint_recipe(f"builtin:{name}")
        if recipe is None:
            print(f"builtin:{name}: no recipe.json yet (run --recipes, then --write-recipes): "
                  "skipped", flush=True)
            continue
        values = {key: recipe.value(dotted) for dotted, key in RECIPE_KEYS.items()}
        length = run_length(steps, speed.get(name), name)
        jobs += [("equal", name, seed, values, length, cache) for seed in SEEDS]
    return sorted(jobs, key=lambda job: job[2])  # seed by seed: a partial table is balanced


def run_jobs(jobs: list[Job], n_jobs: int, stop_after: float | None, data_file: Path) -> None:
    """Train `jobs` in `n_jobs` spawned processes, appending each record as it finishes."""
    if not jobs:
        return
    from detr_core.config.run_config import run_config_from_dict
    from detr_core.data.prepare import prepare_data

    _, name, seed, recipe, steps, cache = jobs[0]
    prepare_data(run_config_from_dict(run_config(name, seed, recipe, steps, cache, False)).data)

    def record(run: dict[str, Any]) -> None:
        data_file.parent.mkdir(parents=True, exist_ok=True)
        with data_file.open("a") as handle:
            handle.write(json.dumps(run) + "\n")
        last = run["curve"][-1] if run["curve"] else {}
        print(f"{run['kind']} {run['checkpoint']} seed {run['seed']} lr "
              f"{run['learning_rate']:g}: {run['wall_s']:.0f} s, val map_50 "
              f"{last.get('eval_map_50')}", flush=True)

    run_pool(train_one, jobs, n_jobs, stop_after, record)


def write_recipes(runs: list[dict[str, Any]], names: list[str], builtin: Path,
                  steps: int) -> list[str]:
    """Each complete grid's `recipe.json` in its checkpoint folder; what was done, a line each.
    A recipe.json measured elsewhere (another `source`) is never overwritten."""
    said = []
    for name in names:
        chosen = choose_learning_rate(
            [r for r in runs if r["kind"] == "grid" and r["checkpoint"] == name], LEARNING_RATES)
        path = builtin / name / "recipe.json"
        if chosen is None:
            said.append(f"builtin:{name}: grid incomplete, no recipe written")
        elif path.is_file() and json.loads(path.read_text()).get("source") != RECIPE_SOURCE:
            said.append(f"builtin:{name}: {path} was measured elsewhere: left as it is")
        else:
            path.write_text(json.dumps(recipe_json(chosen, steps), indent=2) + "\n")
            said.append(f"builtin:{name}: wrote {path} (learning_rate {chosen:g})")
    return said


def header(data_file: Path, speed_file: Path, steps: int) -> list[str]:
    """The report's title and setup paragraph."""
    return ["# The shipped pretrained checkpoints of three DETR families on the embedded task",
            "", f"Commands: `python benchmarks/families.py --recipes`, `--write-recipes`, "
            f"`--time-steps`, then `python benchmarks/families.py` (data: "
            f"`{data_file.relative_to(ROOT) if data_file.is_relative_to(ROOT) else data_file}`,"
            f" steps/s: `{speed_file.name}`). Fine-tuning: schedule-free AdamW (constant, no "
            f"warm-up), GIoU, batch 8, 96 px, the embedded default's synthetic data (1,000 train "
            f"/ 64 val / 128 test images) and augmentation, {steps:,} steps, val and test "
            "evaluated every 50 steps, one thread a run (two runs side by side on 2 cores). "
            "Metrics at score threshold 0.5 with each family's own scores; each cell: mean +- "
            f"std over seeds {', '.join(map(str, SEEDS))}. Steps/s: `--time-steps`, each "
            "checkpoint alone, one thread, 60 timed training steps of batch 8 "
            "(`benchmarks/step_timer.py`), median of 3 interleaved rounds."]


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--stop-after", type=float, default=None)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--recipes", action="store_true", help="run the learning-rate grid")
    parser.add_argument("--write-recipes", action="store_true",
                        help="write each complete grid's recipe.json")
    parser.add_argument("--time-steps", action="store_true",
                        help="time each checkpoint's training steps alone (minutes), then report")
    parser.add_argument("--checkpoints", nargs="*", default=None,
                        help="builtin names to run (default: all, or the grid's for --recipes)")
    parser.add_argument("--steps", type=int, default=STEPS, help="max_steps (smoke runs)")
    parser.add_argument("--out", type=Path, default=None,
                        help="data and report folder (required with --steps)")
    args = parser.parse_args(argv)
    if args.steps != STEPS and args.out is None:
        parser.error("--steps other than 600 needs --out DIR (the real table stays as it is)")
    data_dir = args.out or DATA_DIR
    data_file, speed_file = data_dir / "families.jsonl", data_dir / "families_speed.json"
    report = args.out / "families.md" if args.out else REPORT
    cache = str(CACHE)
    if args.time_steps:
        speed_file.parent.mkdir(parents=True, exist_ok=True)
        names = present(args.checkpoints or list(CHECKPOINTS), BUILTIN)
        speed_file.write_text(json.dumps(time_steps(names), indent=1) + "\n")
    elif args.write_recipes:
        if args.steps != STEPS:
            parser.error("--write-recipes writes the 600-step grid's recipes only")
        for line in write_recipes(read_runs(data_file, args.steps),
                                  args.checkpoints or list(RECIPE_GRID), BUILTIN, args.steps):
            print(line)
    elif not args.report_only:
        done = {run_key(r["kind"], r["checkpoint"], r["seed"], r["learning_rate"])
                for r in read_runs(data_file, args.steps)}
        if args.recipes:
            jobs = grid_jobs(present(args.checkpoints or list(RECIPE_GRID), BUILTIN),
                             args.steps, cache)
        else:
            speed = json.loads(speed_file.read_text()) if speed_file.is_file() else {}
            jobs = equal_jobs(present(args.checkpoints or list(CHECKPOINTS), BUILTIN),
                              args.steps, cache, speed)
        todo = [job for job in jobs
                if run_key(job[0], job[1], job[2], job[3]["learning_rate"]) not in done]
        run_jobs(todo, args.jobs, args.stop_after, data_file)
    speed = json.loads(speed_file.read_text()) if speed_file.is_file() else {}
    shown = SHOWN_STEPS if args.steps == STEPS else tuple(
        sorted({s for s in SHOWN_STEPS if s < args.steps} | {args.steps}))
    write_report(read_runs(data_file, args.steps), speed, report=report, builtin=BUILTIN,
                 checkpoints=CHECKPOINTS, learning_rates=LEARNING_RATES, shown_steps=shown,
                 header=header(data_file, speed_file, args.steps))
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
