"""Part (c) of `benchmarks/families_bccd.py`: the architecture search, run once on BCCD.

`search_spaces/architecture.yaml` searches the shipped checkpoint (`model.checkpoint`) with the
learning rate relative to each checkpoint's recipe, the IoU loss and the backbone's lr ratio on
the embedded default. Its BCCD twin, `benchmarks/spaces/bccd_architecture.yaml`, is written
from it on every `--search` (so it never goes stale): the same `experiment` settings (trials,
ASHA rungs, searcher, the points tried first), `space`, `base` and `base_overrides` (optimizer,
steps, evaluations), with what BCCD needs put over them, the same as in parts (a) and (b): the
three COCO splits, the image size, `num_queries` (60: up to 30 objects an image) and the train
augmentation. The data paths are relative to the space file's folder, as `search/run.py` reads
them (the file is the same in every clone beside `shared/`).

`search/run.py` then runs it under `--time-budget` (default 30 minutes: 1 CPU-hour with two
trials of one thread at a time), and `read_search` reads back from `results/<name>/` what it
picked (`best_config.yaml`), its test metrics with per-class AP (`test_metrics.json`) and what
it cost (`trials.csv`: trials, optimizer steps, trial wall time).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ARCH_SPACE = ROOT / "search_spaces" / "architecture.yaml"
SPACE_FILE = ROOT / "benchmarks" / "spaces" / "bccd_architecture.yaml"
SEARCH_NAME = "families_bccd_search"
#: trials.csv columns that are not a trial's values
_NOT_VALUES = {"trial_id", "status", "best_step", "eval_loss_bbox", "eval_map_50", "eval_recall",
               "eval_precision", "last_step", "wall_time_s", "error", "origin",
               "source_experiment"}


def bccd_space(arch: dict[str, Any], arch_folder: Path, run: dict[str, Any]) -> dict[str, Any]:
    """The architecture space with BCCD under it: `arch` (the parsed architecture.yaml) with
    the data, image size, `num_queries` and train augmentation of `run` (a run of
    `families_bccd.run_config`) put over its `base_overrides` (later keys win); a relative
    `base:` path is made absolute so the file works from any folder."""
    space = {k: v for k, v in arch.items() if k != "base_overrides"}
    if isinstance(space.get("base"), str) and not Path(space["base"]).expanduser().is_absolute():
        space["base"] = str((arch_folder / space["base"]).resolve())
    space["base_overrides"] = {
        **dict(arch.get("base_overrides") or {}),
        "data": run["data"],
        "model.image_size": run["model"]["image_size"],
        "model.config_overrides.num_queries": run["model"]["config_overrides"]["num_queries"],
        "augmentation.train": run["augmentation"]["train"],
    }
    ordered = ("experiment", "base", "base_overrides", "space")
    return {k: space[k] for k in ordered if k in space} | {
        k: v for k, v in space.items() if k not in ordered}


def write_space(run: dict[str, Any], arch_path: Path = ARCH_SPACE,
                out: Path = SPACE_FILE) -> Path | None:
    """Write the BCCD space from `arch_path`; None when that file does not exist (yet)."""
    from detr_core.files.file_io import dump_yaml, load_yaml_mapping

    if not arch_path.is_file():
        return None
    data = {split: {k: os.path.relpath(v, out.parent) for k, v in paths.items()}
            for split, paths in run["data"].items()}
    space = bccd_space(load_yaml_mapping(arch_path), arch_path.parent, {**run, "data": data})
    out.parent.mkdir(parents=True, exist_ok=True)
    dump_yaml(space, out, header=(
        f"Written by benchmarks/families_bccd.py --search from {_shown(arch_path)}:\n"
        "its experiment, base, base_overrides and space, with BCCD's data, image size,\n"
        "num_queries and train augmentation (parts (a) and (b)'s) over base_overrides. Edit\n"
        "the architecture space, not this file: the next --search rewrites it."))
    return out


def _shown(path: Path) -> Path:
    """`path` relative to the repository when it is in it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def run_search(run: dict[str, Any], budget: str, results: Path = ROOT / "results",
               dry_run: bool = False) -> int:
    """Write the BCCD space and run it once through `search/run.py` (resumed if a run of it
    was interrupted; left alone if it finished; `dry_run`: only checked and its plan printed).
    The exit status of search/run.py, 2 when the architecture space does not exist yet."""
    space = write_space(run)
    if space is None:
        print(f"{ARCH_SPACE.relative_to(ROOT)} does not exist yet: part (c) cannot run",
              file=sys.stderr)
        return 2
    command = [sys.executable, str(ROOT / "search" / "run.py"), "--space", str(space),
               "--name", SEARCH_NAME, "--storage", str(results), "--time-budget", budget,
               "--no-dashboard"]
    if dry_run:
        return subprocess.run([*command, "--dry-run"], cwd=ROOT, check=False).returncode
    folder = results / SEARCH_NAME
    if (folder / "best_config.yaml").is_file():
        print(f"{folder} finished already (remove it to search again); reading it back")
        return 0
    if folder.is_dir():
        command.append("--resume")
    print("+ " + " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, check=False).returncode


def read_search(folder: Path) -> dict[str, Any] | None:
    """What a finished search picked and cost, read back from its folder (None: no winner
    there yet): the winner's values and test metrics, and per-trial status, model, steps and
    wall time."""
    from detr_core.files.file_io import load_yaml_mapping

    best = folder / "best_config.yaml"
    if not best.is_file():
        return None
    config = load_yaml_mapping(best)
    metrics_file = folder / "test_metrics.json"
    test = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    trials = []
    table = folder / "trials.csv"
    if table.is_file():
        with table.open(newline="") as handle:
            for row in csv.DictReader(handle):
                trials.append({
                    "status": row.get("status", ""),
                    "values": {k: v for k, v in row.items()
                               if k not in _NOT_VALUES and not k.startswith("best_")},
                    "last_step": int(float(row["last_step"])) if row.get("last_step") else 0,
                    "wall_time_s": float(row["wall_time_s"]) if row.get("wall_time_s") else 0.0,
                    "origin": row.get("origin", "search")})
    args = config.get("training_args", {})
    return {"winner": {"checkpoint": config.get("model", {}).get("checkpoint"),
                       "learning_rate": args.get("learning_rate"),
                       "iou_loss": config.get("iou_loss"),
                       "backbone_lr_ratio": config.get("backbone_lr_ratio")},
            "test": test, "trials": trials}


def search_section(summary: dict[str, Any] | None, classes: tuple[str, ...] = (
        "RBC", "WBC", "Platelets")) -> str | None:
    """Part (c) of the report as Markdown (None when the search has not finished)."""
    if summary is None:
        return None
    win, test = summary["winner"], summary["test"]
    own = [t for t in summary["trials"] if t["origin"] in ("", "search")]
    steps = sum(t["last_step"] for t in own)
    wall = sum(t["wall_time_s"] for t in own)
    by_model: dict[str, list[dict[str, Any]]] = {}
    for trial in own:
        by_model.setdefault(str(trial["values"].get("model.checkpoint", "?")), []).append(trial)

    def cell(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    per_class = test.get("per_class_ap", {})
    lines = [f"`python benchmarks/families_bccd.py --search`: `{SPACE_FILE.relative_to(ROOT)}` "
             f"(from `{ARCH_SPACE.relative_to(ROOT)}`), results in `results/{SEARCH_NAME}/`.",
             "",
             f"Winner: `{win['checkpoint']}`, lr {win['learning_rate']}, {win['iou_loss']}, "
             f"backbone lr ratio {win['backbone_lr_ratio']}. Test: mAP@.5 "
             f"{cell(test.get('map_50'))}, mAP {cell(test.get('map'))}, recall "
             f"{cell(test.get('recall'))}, precision {cell(test.get('precision'))}; per-class "
             "AP " + ", ".join(f"{c} {cell(per_class.get(c))}" for c in classes) + ".",
             "",
             f"Compute: {len(own)} trials, {steps:,} optimizer steps, {wall / 3600:.2f} "
             "trial-hours (one thread each).", "",
             "| checkpoint | trials | steps | statuses |", "| --- | --- | --- | --- |"]
    for model, trials in sorted(by_model.items()):
        statuses: dict[str, int] = {}
        for trial in trials:
            statuses[trial["status"]] = statuses.get(trial["status"], 0) + 1
        shown = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        lines.append(f"| `{model}` | {len(trials)} | "
                     f"{sum(t['last_step'] for t in trials):,} | {shown} |")
    return "\n".join(lines)
