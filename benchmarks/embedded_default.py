"""Quality and speed of the embedded default, as a new user meets it, on this machine.

    python benchmarks/embedded_default.py                 # everything (about 45 min on 2 cores)
    python benchmarks/embedded_default.py --parts train,scratch

Parts (each writes its rows into results/benchmarks/embedded_default.{md,json}):

- `train`: `python -m detr_core.train` (the default: fine-tunes `builtin:tiny-shapes`), with
  seeds 42, 43, 44 (the default config with `seed:` changed), end to end as a user runs it;
- `scratch`: the same runs from the random-init `tiny` preset (`model: {preset: tiny}`), same
  steps: the gain of pretraining;
- `freeze`: `freeze_backbone: true` vs `false`: test metrics of a full run of each (seed 42), and
  optimizer steps/s of each measured side by side in one process (alternating timed blocks);
- `search`: `python search/run.py --space search_spaces/iou.yaml --final-seeds 3` (what
  `make run` runs, plus the winner retrained with 3 seeds): the search's wall time (until the
  retraining starts), the winner's test metrics, and the 3 seeds' mean ± std.

Test metrics are those the runs write (`best_model/test_metrics.json`, score threshold 0.5):
mAP@[.5:.95], mAP@.5, recall (IoU >= .5, one-to-one, same class), IoU mean and centre error over
the pairs found, missed / ground-truth objects.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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

from step_timer import steps_per_second  # noqa: E402  (benchmarks/ is on sys.path)

OUT = ROOT / "results" / "benchmarks"
SEEDS = (42, 43, 44)
COLUMNS = ("map", "map_50", "recall", "precision", "iou_mean", "center_error_px", "missed",
           "num_gt")


def default_raw() -> dict[str, Any]:
    from detr_core.config import load_default_run_config, run_config_to_dict

    return run_config_to_dict(load_default_run_config())


def run_train(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`python -m detr_core.train --config` as a subprocess; wall time and test metrics."""
    from detr_core.files import dump_yaml

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


def part_search(folder: Path, out: Path) -> dict[str, Any]:
    """The shipped search with --final-seeds 3, timed from the console's own lines (kept in
    embedded_default_console.txt beside the report: what `make run` prints, as measured)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "search/run.py", "--space", "search_spaces/iou.yaml", "--name", "bench",
         "--storage", str(folder), "--final-seeds", "3", "--no-dashboard"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    search_wall, lines = None, []
    for line in proc.stdout:
        lines.append(line)
        if search_wall is None and re.search(r"retraining the winner with", line):
            search_wall = time.perf_counter() - started
    proc.wait()
    total = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    (out / "embedded_default_console.txt").write_text("".join(lines))
    if proc.returncode != 0:
        raise RuntimeError("".join(lines[-40:]))
    exp = folder / "bench"
    winner = json.loads((exp / "test_metrics.json").read_text())
    seeds = {p.parent.name: json.loads(p.read_text())
             for p in sorted((exp / "final_seeds").glob("seed_*/test_metrics.json"))}
    best = (exp / "best_config.yaml").read_text().splitlines()[1]
    return {"search_wall_s": round(search_wall or total, 1), "total_wall_s": round(total, 1),
            "console_lines": len(lines), "winner": best.lstrip("# "),
            "winner_test": {k: winner.get(k) for k in COLUMNS},
            "final_seeds": {k: {c: v.get(c) for c in COLUMNS} for k, v in seeds.items()}}


def mean_std(rows: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {std:.3f}"


def _num(value: float | None, digits: int = 3) -> str:
    """A metric for the table; n/a where it is undefined (no pair found: no IoU, no centre)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]], summary_label: str | None = None) -> list[str]:
    head = ["| run | wall (s) | steps/s (end to end) | mAP | mAP@.5 | recall | precision | "
            "IoU mean (pairs found) | centre error px | missed / GT |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    # precision: n/a in rows recorded before it was a column
    body = [f"| {r['run']} | {r.get('wall_s', '')} | {r.get('steps_per_s', '')} | "
            f"{_num(r['map'])} | {_num(r['map_50'])} | {_num(r['recall'])} | "
            f"{_num(r.get('precision'))} | {_num(r['iou_mean'])} | "
            f"{_num(r['center_error_px'], 2)} | "
            f"{r['missed']} / {r['num_gt']} |" for r in rows]
    if summary_label:
        body.append(f"| **{summary_label}: mean ± std** | {mean_std(rows, 'wall_s')} | "
                    f"{mean_std(rows, 'steps_per_s')} | {mean_std(rows, 'map')} | "
                    f"**{mean_std(rows, 'map_50')}** | **{mean_std(rows, 'recall')}** | "
                    f"**{mean_std(rows, 'precision')}** | {mean_std(rows, 'iou_mean')} | "
                    f"{mean_std(rows, 'center_error_px')} | "
                    f"{mean_std(rows, 'missed')} |")
    return head + body


def render(results: dict[str, Any]) -> str:
    lines = ["# The embedded default: quality and speed on this machine", "",
             f"`python benchmarks/embedded_default.py` on {results['machine']}. Test split of "
             "the synthetic rectangles / ellipses / triangles task (128 images), score threshold "
             "0.5. Recall: confident detections matched one-to-one to ground truth of their "
             "class at IoU >= 0.5; precision: the matched share of the confident detections "
             "(duplicates lower it; n/a in rows recorded before it was a column). IoU mean and "
             "centre error are over the pairs found.", ""]
    if "train" in results:
        lines += ["## `python -m detr_core.train` (fine-tunes `builtin:tiny-shapes`)", "",
                  *table(results["train"], "fine-tuned"), ""]
    if "scratch" in results:
        lines += ["## The same runs from random weights (`model: {preset: tiny}`)", "",
                  *table(results["scratch"], "from scratch"), ""]
    if "freeze" in results:
        f = results["freeze"]
        lines += ["## `freeze_backbone: true` vs `false` (pretrained backbone)", "",
                  *table(f["runs"]), "",
                  f"Optimizer steps/s measured side by side in one process (2 x 150 steps each, "
                  f"alternating): trained {f['train_steps_per_s']['trained']}, frozen "
                  f"{f['train_steps_per_s']['frozen']}: frozen / trained = "
                  f"**{f['frozen_over_trained']}**.", ""]
    if "search" in results:
        s = results["search"]
        seeds = [{"run": k, **v} for k, v in s["final_seeds"].items()]
        lines += ["## `make run` (search_spaces/iou.yaml), winner retrained with "
                  "`--final-seeds 3`", "",
                  f"Search wall time (start to the retraining): **{s['search_wall_s']} s**; "
                  f"with the 3 seeds: {s['total_wall_s']} s; console: {s['console_lines']} "
                  f"lines. {s['winner']}", "",
                  *table([{"run": "winner (its best step)", **s["winner_test"]}]), "",
                  *table(seeds, "winner's config, 3 seeds"), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="train,scratch,freeze,search")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    import platform

    path = args.out / "embedded_default.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    with tempfile.TemporaryDirectory(prefix="embedded-") as tmp:
        folder = Path(tmp)
        for part in args.parts.split(","):
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
                results["search"] = part_search(folder, args.out)
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=2) + "\n")
            (args.out / "embedded_default.md").write_text(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
