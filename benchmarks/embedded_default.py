"""Quality and speed of the embedded default, as a new user meets it, on this machine.

    python benchmarks/embedded_default.py                 # everything (about an hour on 2 cores)
    python benchmarks/embedded_default.py --parts train,scratch
    python benchmarks/embedded_default.py --parts search,recipe --final-seeds 3

Parts (each writes its rows into results/benchmarks/embedded_default.{md,json}; the report is
rendered by `embedded_default_report.py`):

- `train`: `python -m detr_core.train` (the default: fine-tunes `builtin:tiny-shapes`), with
  seeds 42, 43, 44 (the default config with `seed:` changed), end to end as a user runs it;
- `scratch`: the same runs from the random-init `tiny` preset (`model: {preset: tiny}`), same
  steps: the gain of pretraining;
- `freeze`: `freeze_backbone: true` vs `false`: test metrics of a full run of each (seed 42), and
  optimizer steps/s of each measured side by side in one process (alternating timed blocks);
- `search`: `python search/run.py --space search_spaces/iou.yaml --final-seeds N` (what
  `make run` runs, plus the winner retrained with N seeds, `--final-seeds`, 3 by default): the
  search's wall time (until the retraining starts), the winner's test metrics and the N seeds'
  mean ± std, and from the experiment's trials.csv and best_config.yaml the number of trials,
  how many ASHA stopped, the steps trained (sum of every trial's `last_step`), the CPU-seconds
  (sum of `cpu_s`), the winner's `model.checkpoint` and its searched values;
- `recipe`: the same checkpoint trained once with its recipe's defaults at the search's
  compute: the search's base run (`load_search_spec(search_spaces/iou.yaml).base`: same
  checkpoint, data, optimizer, evaluation) with GIoU, no warm-up, seed 42, the learning rate,
  backbone ratio, weight decay and clipping left unset (so `detr_core` fills them from the
  checkpoint's recipe) and `max_steps` = the `search` part's steps trained (every trial trains
  the same checkpoint, so a step costs the same). Why: a search is worth running only if its
  winner beats what the checkpoint's own recipe reaches with the same compute; the report says
  by how much it does, or by how much it falls short. Needs the `search` part's result (run in
  the same call, or recorded in the JSON by an earlier one).

The report ends with the targets (the winner's N-seed mean test mAP@.5 >= 0.95, mAP >= 0.80,
precision >= 0.90, recall >= 0.93; the search <= 240 s), each met or missed by how much.

Test metrics are those the runs write (`best_model/test_metrics.json`, score threshold 0.5):
mAP@[.5:.95], mAP@.5, recall (IoU >= .5, one-to-one, same class), IoU mean and centre error over
the pairs found, missed / ground-truth objects.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import re
import shutil
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

from benchmarks.embedded_default_report import render  # noqa: E402  (after sys.path)

OUT = ROOT / "results" / "benchmarks"
SPACE = "search_spaces/iou.yaml"
PARTS = ("train", "scratch", "freeze", "search", "recipe")
SEEDS = (42, 43, 44)
COLUMNS = ("map", "map_50", "recall", "precision", "iou_mean", "center_error_px", "missed",
           "num_gt")


def default_raw() -> dict[str, Any]:
    from detr_core.config.run_config import load_default_run_config, run_config_to_dict

    return run_config_to_dict(load_default_run_config())


def run_train(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`python -m detr_core.train --config` as a subprocess; wall time and test metrics."""
    from detr_core.files.file_io import dump_yaml

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "run.yaml"
    dump_yaml(raw, config)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "detr_core.train", "--config", str(config),
                           "--output-dir", str(folder / "out")], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    metrics = json.loads((folder / "out" / "best_model" / "test_metrics.json").read_text())
    history = [json.loads(x) for x in (folder / "out" / "eval_history.jsonl").read_text()
               .splitlines()]
    steps = history[-1]["step"]
    return {"wall_s": round(wall, 1), "steps": steps, "steps_per_s": round(steps / wall, 2),
            **{k: metrics.get(k) for k in COLUMNS}}


def seeds_of(raw: dict[str, Any], folder: Path, label: str) -> list[dict[str, Any]]:
    rows = []
    for seed in SEEDS:
        row = run_train({**raw, "seed": seed}, folder / f"{label}-{seed}")
        rows.append({"run": f"{label}, seed {seed}", **row})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def part_freeze(folder: Path) -> dict[str, Any]:
    from benchmarks.step_timer import steps_per_second

    raw = default_raw()
    runs = []
    for freeze in (False, True):
        row = run_train({**raw, "freeze_backbone": freeze}, folder / f"freeze-{freeze}")
        runs.append({"run": f"freeze_backbone: {str(freeze).lower()}, seed 42", **row})
        print(json.dumps(runs[-1]), flush=True)
    speed: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(2):  # alternate, so both see the same machine
        for freeze in (False, True):
            speed[freeze].append(steps_per_second(150, freeze_backbone=freeze))
    steps_per_s = {k: statistics.fmean(v) for k, v in speed.items()}
    return {"runs": runs,
            "train_steps_per_s": {"trained": round(steps_per_s[False], 2),
                                  "frozen": round(steps_per_s[True], 2)},
            "frozen_over_trained": round(steps_per_s[True] / steps_per_s[False], 3)}


def part_search(folder: Path, out: Path, final_seeds: int = 3) -> dict[str, Any]:
    """The shipped search with --final-seeds N (N fresh runs of the winner's configuration),
    timed from the console's own lines (kept in
    embedded_default_console.txt beside the report: what `make run` prints, as measured)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "search/run.py", "--space", SPACE, "--name", "bench",
         "--storage", str(folder), "--final-seeds", str(final_seeds), "--no-dashboard"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    search_wall, lines = None, []
    for line in proc.stdout:
        lines.append(line)
        if search_wall is None and line.startswith("finalists: "):  # the stage starts
            search_wall = time.perf_counter() - started
    proc.wait()
    total = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    (out / "embedded_default_console.txt").write_text("".join(lines))
    if proc.returncode != 0:
        raise RuntimeError("".join(lines[-40:]))
    exp = folder / "bench"
    winner = json.loads((exp / "test_metrics.json").read_text())
    drawing = exp / "best_model" / "test_detections.png"  # the folder is temporary: keep it
    if drawing.is_file():
        shutil.copy2(drawing, out / "embedded_default_test_detections.png")
    # --final-seeds N: N fresh runs of the winner's configuration (the finalists stage)
    seeds = {f"seed_{json.loads((p.parent / 'params.json').read_text())['seed']}":
             json.loads(p.read_text())
             for p in sorted((exp / "finalists").glob("*/test_metrics.json"))}
    best = (exp / "best_config.yaml").read_text().splitlines()[1]
    return {"search_wall_s": round(search_wall or total, 1), "total_wall_s": round(total, 1),
            "console_lines": len(lines), "winner": best.lstrip("# "),
            **search_facts(exp),
            "winner_test": {k: winner.get(k) for k in COLUMNS},
            "final_seeds": {k: {c: v.get(c) for c in COLUMNS} for k, v in seeds.items()}}


def _cell(text: str) -> Any:
    """A trials.csv cell as the value it holds: int, float, text, or None when empty."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def search_facts(exp: Path) -> dict[str, Any]:
    """From a finished experiment folder's trials.csv and best_config.yaml: the number of
    trials, how many ASHA stopped, the steps trained (sum of `last_step`), the CPU-seconds (sum
    of `cpu_s`), the winner's `model.checkpoint` and its searched values (trials.csv's columns
    between `status` and the first `best_*`, from the winner's row)."""
    from detr_core.files.file_io import load_yaml_mapping

    with (exp / "trials.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    header = list(rows[0]) if rows else []
    first_best = next((i for i, c in enumerate(header) if c.startswith("best_")), len(header))
    searched = header[header.index("status") + 1:first_best] if "status" in header else []
    text = (exp / "best_config.yaml").read_text(encoding="utf-8")
    found = re.search(r"Winner: trial ([^\s,]+)", text)
    winner = next((r for r in rows if found and r["trial_id"] == found.group(1)),
                  rows[0] if rows else {})
    model = load_yaml_mapping(exp / "best_config.yaml").get("model") or {}
    return {"trials": len(rows),
            "asha_stopped": sum(r["status"].startswith("stopped by ASHA") for r in rows),
            "steps_trained": sum(_cell(r["last_step"]) or 0 for r in rows),
            "cpu_s": round(sum(_cell(r["cpu_s"]) or 0.0 for r in rows), 1),
            "winner_checkpoint": model.get("checkpoint"),
            "winner_values": {k: _cell(winner.get(k, "")) for k in searched}}


def recipe_run_config(spec_base: dict[str, Any], steps: int) -> dict[str, Any]:
    """The recipe run: the search's base run (its checkpoint, data, optimizer, evaluation) with
    GIoU, no warm-up, seed 42, `steps` optimizer steps (no epochs), and the four values a
    recipe fills left unset (absent from `training_args`, `backbone_lr_ratio` None), so
    `detr_core` takes them from the checkpoint's recipe. `spec_base` is not changed."""
    from detr_core.model.recipes import RECIPE_KEYS

    raw = copy.deepcopy(spec_base)
    args = dict(raw.get("training_args") or {})
    for key in RECIPE_KEYS:
        if key.startswith("training_args."):
            args.pop(key.removeprefix("training_args."), None)
    for key in ("num_train_epochs", "warmup_ratio"):
        args.pop(key, None)
    args.update(warmup_steps=0, max_steps=int(steps))
    return {**raw, "training_args": args, "backbone_lr_ratio": None, "iou_loss": "giou",
            "seed": 42}


def recipe_values(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The values the run's checkpoint's recipe fills in (None: it has none, Trainer defaults)."""
    from detr_core.config.run_config import run_config_from_dict
    from detr_core.model.recipes import RECIPE_KEYS, recipe_for

    recipe = recipe_for(run_config_from_dict(raw).model)
    if recipe is None:
        return None
    return {"name": recipe.name,
            **{k.removeprefix("training_args."): recipe.value(k) for k in RECIPE_KEYS}}


def search_steps(results: dict[str, Any]) -> int:
    """The recorded search's steps trained: the recipe run's budget. Refuses without one."""
    steps = (results.get("search") or {}).get("steps_trained")
    if not steps:
        why = ("lacks steps_trained: recorded before it was" if "search" in results
               else "is absent")
        raise SystemExit(
            "embedded_default.py: the recipe part trains at the search's compute, but no search "
            f"result with its steps trained is recorded (results['search'] {why}): run "
            "`--parts search,recipe`")
    return int(steps)


def part_recipe(results: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The checkpoint trained once with its recipe's defaults at the search's compute."""
    from search.space.spec import load_search_spec

    steps = search_steps(results)
    raw = recipe_run_config(load_search_spec(ROOT / SPACE).base, steps)
    checkpoint = raw["model"].get("checkpoint")
    row = run_train(raw, folder / "recipe")
    run = {"run": f"recipe of {checkpoint}, seed 42, {steps:,} steps", **row}
    print(json.dumps(run), flush=True)
    return {"checkpoint": checkpoint, "max_steps": steps, "recipe": recipe_values(raw),
            "run": run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS),
                        help="comma-separated, run in this order (default: %(default)s)")
    parser.add_argument("--final-seeds", type=int, default=3, metavar="N",
                        help="the search part's winner retrained with N seeds (default 3)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)} (known: {', '.join(PARTS)})")
    if args.final_seeds < 1:
        parser.error("--final-seeds must be >= 1 (the report compares the seeds' mean)")
    import platform

    path = args.out / "embedded_default.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    if "recipe" in parts and "search" not in parts[:parts.index("recipe")]:
        search_steps(results)  # refuse before any training
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    with tempfile.TemporaryDirectory(prefix="embedded-") as tmp:
        folder = Path(tmp)
        for part in parts:
            if part == "train":
                results["train"] = seeds_of(default_raw(), folder, "fine-tuned")
            elif part == "scratch":
                raw = default_raw()
                raw["model"] = {**raw["model"], "preset": "tiny"}
                raw["model"].pop("checkpoint")
                results["scratch"] = seeds_of(raw, folder, "from scratch")
            elif part == "freeze":
                results["freeze"] = part_freeze(folder)
            elif part == "search":
                results["search"] = part_search(folder, args.out, args.final_seeds)
            elif part == "recipe":
                results["recipe"] = part_recipe(results, folder)
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=2) + "\n")
            (args.out / "embedded_default.md").write_text(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
