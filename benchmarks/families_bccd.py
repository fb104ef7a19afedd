"""The shipped tiny checkpoints fine-tuned on real photos (BCCD), against their families' presets.

    python benchmarks/families_bccd.py --time-steps 256 320 384  # steps/s per family and size
    python benchmarks/families_bccd.py                   # parts (a) + (b): resume; 2 side by side
    python benchmarks/families_bccd.py --search          # part (c): the architecture space, once
    python benchmarks/families_bccd.py --search-dry-run  # (c) checked by search/run.py --dry-run
    python benchmarks/families_bccd.py --report-only     # rewrite the report

Every shipped checkpoint was pretrained on synthetic shapes at 96 px; BCCD (364 blood-smear
photos, 640x480, RBC / WBC / Platelets, up to 30 overlapping objects an image; MIT, see its
SOURCE.md) asks whether that pretraining transfers to a real task. (a) each `builtin:`
checkpoint is fine-tuned on BCCD train for `STEPS` optimizer steps, the best step chosen by val
mAP@.5, and scored on test (mAP@.5, mAP, recall, precision, per-class AP); (b) the tiny preset
of the same family from random weights, same steps, same everything; (c) `--search` runs
`search_spaces/architecture.yaml` (checkpoint x learning rate x IoU loss x backbone ratio) on
BCCD once through `search/run.py` and reads back its winner, compute and per-class AP.

Same for every run of (a) and (b), so only the starting weights differ: `IMAGE_SIZE` px (the
platelets, median 38 px of 640, keep ~19 px; chosen with `--time-steps` to fit the budget),
`NUM_QUERIES` queries (BCCD has up to 30 objects an image: the DETR checkpoint's 10 and the
presets' 30 are too few; a checkpoint's query embeddings then start afresh, said at build time),
AdamW 1e-3 (weight decay 1e-4, clipping 0.1, backbone at the main rate, GIoU, constant after a
short warm-up), batch 8, one thread a run, seed 0. The train images are shrunk to `IMAGE_SIZE`
first in the augmentation (the processor would resize them anyway; flips and colour jitter on
the small image cost less), and the splits are decoded once (`$DETR_SEARCH_IMAGE_CACHE_MB`).

Budget (2 CPU-hours on the 2-core machine, all three parts): `--time-steps 256 320 384` gave
DETR 6.2 / 4.6 / 3.3, D-FINE 2.4 / 1.75 / 1.4, Deformable DETR 2.6 / 1.8 / 1.3 training steps/s
(one thread, batch 8; measured while a 2-thread pretraining shared the cores, load average 3.5,
so an idle machine is faster). At 320 px the six runs' 600 steps are ~0.45 CPU-hours, ~0.6 with
evaluations (87 val images in ~2-4 s, every 100 steps) and start-up: ~20 minutes with two runs
side by side. 384 px would be ~0.6 CPU-hours of steps alone for 4 px more platelet; 256 px
leaves platelets ~15 px, about one cell of DETR's stride-16 map. Part (c) runs the
architecture space's own budget (12 trials, ASHA 150 / 3 / 450 steps: ~0.5 CPU-hours here),
capped by `--search-budget` (30 minutes of wall time, at most 1 CPU-hour).

Resumable: each finished run is appended to `benchmarks/data/families_bccd.jsonl` at once and
skipped on the next call; `--stop-after SECONDS` starts no new run after that long. A shipped
checkpoint not in `detr_core/builtin/` yet is skipped with a line (run again once it is).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bccd_search import (  # noqa: E402
    SEARCH_NAME,
    read_search,
    run_search,
    search_section,
)
from benchmarks.run_pool import run_pool  # noqa: E402  (after the sys.path line above)

DATA_FILE = ROOT / "benchmarks" / "data" / "families_bccd.jsonl"
SPEED_FILE = ROOT / "benchmarks" / "data" / "families_bccd_speed.json"
REPORT = ROOT / "results" / "benchmarks" / "families_bccd.md"
DATA_ROOT = ROOT.parent / "shared" / "data" / "bccd"
#: (run name, part, family, model section without the image size)
RUNS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("builtin:tiny-shapes", "a", "detr", {"checkpoint": "builtin:tiny-shapes"}),
    ("builtin:tiny-shapes-d-fine", "a", "d_fine", {"checkpoint": "builtin:tiny-shapes-d-fine"}),
    ("builtin:tiny-shapes-deformable", "a", "deformable_detr",
     {"checkpoint": "builtin:tiny-shapes-deformable"}),
    ("tiny:detr", "b", "detr", {"preset": "tiny", "family": "detr"}),
    ("tiny:d_fine", "b", "d_fine", {"preset": "tiny", "family": "d_fine"}),
    ("tiny:deformable_detr", "b", "deformable_detr",
     {"preset": "tiny", "family": "deformable_detr"}),
)
FAMILIES = ("detr", "d_fine", "deformable_detr")
IMAGE_SIZE = 320
NUM_QUERIES = 60
STEPS = 600
EVERY = 100
BATCH = 8
SEED = 0
METRICS = ("map_50", "map", "recall", "precision")
LABELS = {"map_50": "mAP@.5", "map": "mAP", "recall": "recall", "precision": "precision"}
CLASSES = ("RBC", "WBC", "Platelets")
TITLES = {"detr": "DETR", "d_fine": "D-FINE", "deformable_detr": "Deformable DETR"}


def run_config(model: dict[str, Any], data_root: Path = DATA_ROOT,
               image_size: int | None = None, steps: int | None = None) -> dict[str, Any]:
    """One run of (a) or (b) on BCCD (`IMAGE_SIZE`, `STEPS` unless given): everything stated,
    so no checkpoint recipe fills a value and a checkpoint differs from its preset by the
    starting weights alone."""
    image_size = IMAGE_SIZE if image_size is None else image_size
    steps = STEPS if steps is None else steps
    splits = {name: {"annotations": str(data_root / folder / "_annotations.coco.json"),
                     "images": str(data_root / folder)}
              for name, folder in (("train", "train"), ("val", "valid"), ("test", "test"))}
    return {
        "seed": SEED,
        "num_threads": 1,
        "iou_loss": "giou",
        "backbone_lr_ratio": 1.0,
        "data": splits,
        "model": {**model, "image_size": image_size,
                  "config_overrides": {"num_queries": NUM_QUERIES}},
        "training_args": {"learning_rate": 1e-3, "weight_decay": 1e-4, "max_grad_norm": 0.1,
                          "optim": "adamw_torch_fused", "lr_scheduler_type": "constant_with_warmup",
                          "warmup_steps": 50, "max_steps": steps,
                          "per_device_train_batch_size": BATCH, "logging_steps": EVERY,
                          "metric_for_best_model": "eval_map_50", "greater_is_better": True},
        "augmentation": {"train": [{"LongestMaxSize": {"max_size": image_size}},
                                   {"HorizontalFlip": {"p": 0.5}},
                                   {"VerticalFlip": {"p": 0.5}},
                                   {"ColorJitter": {"brightness": 0.2, "contrast": 0.2,
                                                    "saturation": 0.2, "hue": 0.02, "p": 0.5}}],
                         "val": []},
    }


def available(model: dict[str, Any]) -> bool:
    """Whether the run's weights are on this machine (a preset always is)."""
    if "checkpoint" not in model:
        return True
    from detr_core.files.builtin_models import resolve_checkpoint

    return (Path(resolve_checkpoint(model["checkpoint"])) / "config.json").is_file()


def pending_runs(done: Iterable[dict[str, Any]], names: Iterable[str]) -> list[str]:
    """The runs of `names` (in the order given) with no record in `done` yet: what a resumed
    call still has to train."""
    finished = {record["run"] for record in done}
    return [name for name in names if name not in finished]


def train_one(job: tuple[str, str]) -> dict[str, Any]:
    """Train one run in this process: its val curve, test metrics at the best val step, speed."""
    name, data_root = job
    _, part, family, model = next(r for r in RUNS if r[0] == name)
    from detr_core.config.run_config import run_config_from_dict
    from detr_core.train import train_run

    config = run_config_from_dict(run_config(model, Path(data_root)), source=name)
    started_at = commit()
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = train_run(config, out)
        wall = time.perf_counter() - start
        from transformers import AutoModelForObjectDetection

        parameters = AutoModelForObjectDetection.from_pretrained(
            Path(out) / "best_model").num_parameters()
    eval_time = sum(float(v) for row in result.history for k, v in row.items()
                    if k.endswith("_runtime"))
    test = result.test_metrics or {}
    return {"run": name, "part": part, "family": family, "image_size": IMAGE_SIZE,
            "steps": STEPS, "num_queries": NUM_QUERIES, "parameters": parameters,
            "best_step": result.best_step, "best_val_map_50": result.best_metric,
            "val_curve": [{k: v for k, v in row.items()
                           if k == "step" or k in {f"eval_{m}" for m in METRICS}}
                          for row in result.history],
            "test": {**{m: test.get(m) for m in METRICS},
                     "per_class_ap": test.get("per_class_ap", {})},
            "steps_per_s": STEPS / max(wall - eval_time, 1e-9), "wall_s": wall,
            "commit": started_at}


def time_steps(sizes: list[int], steps: int = 20, data_root: Path = DATA_ROOT
               ) -> dict[str, dict[str, float]]:
    """Training steps/s of each family's model at each size, one thread (a shipped checkpoint
    is its family's tiny preset pretrained: one architecture, one timing), and the machine's
    1-minute load average as each size's timing started (`load_1min`: 1 on an idle 2-core
    machine is this timing alone; more means another job shared the cores)."""
    from benchmarks.step_timer import steps_per_second
    from detr_core.config.run_config import run_config_from_dict

    speed: dict[str, dict[str, float]] = {}
    for size in sizes:
        speed.setdefault(str(size), {})["load_1min"] = round(os.getloadavg()[0], 2)
        for family in FAMILIES:
            model = {"preset": "tiny", "family": family}
            config = run_config_from_dict(run_config(model, data_root, image_size=size))
            rate = steps_per_second(steps, threads=1, freeze_backbone=False, warmup=3,
                                    config=config)
            speed.setdefault(str(size), {})[family] = rate
            print(f"{size} px {family}: {rate:.2f} steps/s", flush=True)
    return speed


def commit() -> str:
    """The commit the code ran at (`-dirty`: with uncommitted changes on top)."""
    return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, text=True,
                          capture_output=True, check=False).stdout.strip()


def read_runs(path: Path | None = None) -> list[dict[str, Any]]:
    """Every run recorded so far in `path` (default `DATA_FILE`; one JSON object a line)."""
    path = DATA_FILE if path is None else path
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_run(record: dict[str, Any], path: Path | None = None) -> None:
    """Record one finished run at once in `path` (default `DATA_FILE`): a later call skips it."""
    path = DATA_FILE if path is None else path
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def fmt(value: Any) -> str:
    """A metric cell: 3 decimals, `n/a` for a missing value or NaN (no confident detection)."""
    if value is None or value != value:
        return "n/a"
    return f"{value:.3f}"


def budget_estimate(speed: dict[str, dict[str, float]], size: int = IMAGE_SIZE,
                    steps: int = STEPS) -> float | None:
    """CPU-seconds of training steps for the six runs of (a) and (b) at `size` (two runs a
    family, evaluations not included), from the timed steps/s; None when not timed."""
    rates = speed.get(str(size), {})
    if not all(rates.get(f) for f in FAMILIES):
        return None
    return sum(2 * steps / rates[f] for f in FAMILIES)


def gain_table(by_name: dict[str, dict[str, Any]]) -> list[str]:
    """Test mAP@.5 of each family's checkpoint minus its preset's (what the synthetic
    pretraining bought on real photos), for the families with both runs."""
    rows = []
    for family in FAMILIES:
        names = {part: name for name, part, of, _ in RUNS if of == family}
        pair = [by_name.get(names["a"]), by_name.get(names["b"])]
        if None in pair:
            continue
        values = [run["test"].get("map_50") for run in pair]
        gain = (f"{values[0] - values[1]:+.3f}" if None not in values
                and values[0] == values[0] and values[1] == values[1] else "n/a")
        rows.append(f"| {TITLES[family]} | {fmt(values[0])} | {fmt(values[1])} | {gain} |")
    if not rows:
        return []
    return ["## Pretrained against random weights (test mAP@.5)", "",
            "| family | (a) checkpoint | (b) preset | (a) - (b) |", "| --- | --- | --- | --- |",
            *rows, ""]


def write_report(runs: list[dict[str, Any]], speed: dict[str, dict[str, float]],
                 search: str | None) -> str:
    """The markdown report (returned): the setting, the timing, one table of (a) and (b) with
    per-class AP, what the pretraining bought per family, the val curves, then part (c)
    (`search`, from `bccd_search.search_section`)."""
    lines = ["# Shipped checkpoints vs random weights on real photos (BCCD)", "",
             "Command: `python benchmarks/families_bccd.py` (data: "
             "`benchmarks/data/families_bccd.jsonl`). BCCD (`../shared/data/bccd`: 205 / 87 / "
             "72 train / val / test blood-smear photos, 640x480, RBC / WBC / Platelets, up to "
             f"30 objects an image). Every run: **{IMAGE_SIZE} px** (longest edge), "
             f"{NUM_QUERIES} queries, {STEPS} steps of batch {BATCH}, AdamW 1e-3 (weight decay "
             "1e-4, clipping 0.1, 50 warm-up steps, then constant), backbone at the main rate, "
             "GIoU, train augmentation: shrink to the image size, horizontal and vertical flips, "
             f"colour jitter; one thread a run, seed {SEED}. Val mAP@.5 every {EVERY} steps "
             "chooses the best step; test metrics are that step's (score threshold 0.5 for "
             "recall and precision). Per-class AP: COCO AP@[.5:.95] of each class on test.", ""]
    if speed:
        sizes = sorted(speed, key=int)
        lines += ["## Training steps/s (one thread, batch 8, `--time-steps`)", "",
                  "| family | " + " | ".join(f"{s} px" for s in sizes) + " |",
                  "| --- | " + " | ".join("---" for _ in sizes) + " |"]
        lines += [f"| {TITLES[f]} | " + " | ".join(
            f"{speed[s][f]:.2f}" if speed[s].get(f) else "n/a" for s in sizes) + " |"
            for f in FAMILIES]
        lines.append("| load average when timed (2 cores) | " + " | ".join(
            f"{speed[s]['load_1min']:.1f}" if "load_1min" in speed[s] else "n/a"
            for s in sizes) + " |")
        estimate = budget_estimate(speed)
        if estimate is not None:
            lines += ["", f"At {IMAGE_SIZE} px the six runs' training steps take about "
                      f"{estimate / 3600:.2f} CPU-hours (evaluations on top)."]
        lines.append("")
    lines += ["## Test split (72 images) at the best val step", "",
              "| part | run | family | parameters | best step | val mAP@.5 | "
              + " | ".join(LABELS[m] for m in METRICS) + " | "
              + " | ".join(f"AP {c}" for c in CLASSES)
              + " | steps/s | wall |",
              "|" + " --- |" * (8 + len(METRICS) + len(CLASSES))]
    by_name = {run["run"]: run for run in runs}
    for name, part, family, _ in RUNS:
        run = by_name.get(name)
        if run is None:
            lines.append(f"| {part} | `{name}` | {TITLES[family]} | not run yet |"
                         + " |" * (4 + len(METRICS) + len(CLASSES)))
            continue
        per_class = run["test"].get("per_class_ap", {})
        lines.append(
            f"| {part} | `{name}` | {TITLES[family]} | {run['parameters']:,} | "
            f"{run['best_step']} | {fmt(run['best_val_map_50'])} | "
            + " | ".join(fmt(run["test"].get(m)) for m in METRICS) + " | "
            + " | ".join(fmt(per_class.get(c)) for c in CLASSES)
            + f" | {run['steps_per_s']:.2f} | {run['wall_s'] / 60:.0f} min |")
    lines += ["", "(a): a shipped checkpoint fine-tuned; (b): its family's tiny preset from "
              "random weights. Steps/s here: training steps of the run itself, two runs "
              "sharing the two cores (start-up included).", ""]
    lines += gain_table(by_name)
    lines += ["## Val mAP@.5 by step", ""]
    steps = sorted({row["step"] for run in runs for row in run["val_curve"]})
    if steps:
        lines += ["| run | " + " | ".join(str(s) for s in steps) + " |",
                  "|" + " --- |" * (1 + len(steps))]
        for name, *_ in RUNS:
            if name in by_name:
                curve = {row["step"]: row.get("eval_map_50") for row in by_name[name]["val_curve"]}
                lines.append(f"| `{name}` | " + " | ".join(fmt(curve.get(s)) for s in steps)
                             + " |")
    lines += ["", "## (c) The architecture search on BCCD", "",
              search or "Not run yet: `python benchmarks/families_bccd.py --search`.", ""]
    if runs:
        lines.append("Commits the runs were made at: "
                     + ", ".join(sorted({r["commit"] for r in runs})) + ".")
    return "\n".join(lines) + "\n"


def train_all(names: list[str], data_root: Path, jobs: int, stop_after: float | None) -> None:
    """Train `names` `jobs` at a time in fresh processes, each recorded as soon as it ends."""
    os.environ.setdefault("DETR_SEARCH_IMAGE_CACHE_MB", "512")  # every BCCD split decoded once

    def record(run: dict[str, Any]) -> None:
        append_run(run)
        print(f"{run['run']}: {run['wall_s']:.0f} s, best step {run['best_step']}, "
              f"test map_50 {fmt(run['test']['map_50'])}", flush=True)

    run_pool(train_one, [(name, str(data_root)) for name in names], jobs, stop_after, record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA_ROOT, help="the BCCD folder")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--stop-after", type=float, default=None)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--runs", nargs="*", default=[r[0] for r in RUNS])
    parser.add_argument("--time-steps", type=int, nargs="*", metavar="SIZE",
                        help="time each family's training steps at these sizes, then report")
    parser.add_argument("--search", action="store_true",
                        help="part (c): run the architecture space on BCCD once, then report")
    parser.add_argument("--search-dry-run", action="store_true",
                        help="write the BCCD space and check it with search/run.py --dry-run")
    parser.add_argument("--search-budget", default="30m",
                        help="--time-budget of the search (default 30m: 1 CPU-hour)")
    args = parser.parse_args(argv)
    speed = json.loads(SPEED_FILE.read_text()) if SPEED_FILE.is_file() else {}
    if args.time_steps:
        speed.update(time_steps(args.time_steps, data_root=args.data))
        SPEED_FILE.parent.mkdir(parents=True, exist_ok=True)
        SPEED_FILE.write_text(json.dumps(speed, indent=1) + "\n")
    elif args.search or args.search_dry_run:
        code = run_search(run_config(RUNS[0][3], args.data), args.search_budget,
                          dry_run=args.search_dry_run)
        if code != 0 or args.search_dry_run:
            print(f"search/run.py exited {code}", file=sys.stderr)
            return code
    elif not args.report_only:
        models = {r[0]: r[3] for r in RUNS}
        todo = pending_runs(read_runs(), args.runs)
        missing = [n for n in todo if not available(models[n])]
        for name in missing:
            print(f"{name}: not in detr_core/builtin/ yet, skipped (run again once it is)")
        train_all([n for n in todo if n not in missing], args.data, args.jobs, args.stop_after)
    summary = read_search(ROOT / "results" / SEARCH_NAME)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(write_report(read_runs(), speed, search_section(summary)))
    print(f"report: {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
