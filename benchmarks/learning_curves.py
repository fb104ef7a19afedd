"""Record the learning-curve table the search benchmark replays: a full grid, every seed.

    python benchmarks/learning_curves.py                      # resume the grid where it stopped
    python benchmarks/learning_curves.py --limit 10           # at most 10 more runs now
    python benchmarks/learning_curves.py --grid benchmarks/learning_curves.yaml --workers 2

What a tabular HPO benchmark (HPOBench, LCBench, YAHPO) does: train every configuration of a
grid once per seed, at full budget, and keep its whole curve, so that any number of searches can
later be replayed on identical noise (`benchmarks/search_efficiency.py`). The base run is the
one the shipped search trains (`space_file` of the grid YAML: its base run config and
overrides); each grid point sets the grid's keys and the seed. Every evaluation records val
*and* test metrics (`evaluation.test_during_training`), so whatever step a strategy would
export can be scored on the test split.

Resumable: each finished run is appended to `benchmarks/data/learning_curves.jsonl` at once,
and runs already there are skipped; runs go seed by seed, so a partial table is a complete grid
for the first seeds. `learning_curves.meta.json` records the command, the commit, the sha256 of
the checkpoint the base fine-tunes, the grid and the machine. Runs use one thread each and
`--workers` processes side by side (2 on this 2-core machine).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import multiprocessing
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from search.replay import config_key  # noqa: E402  (after the sys.path line above)

DEFAULT_GRID = ROOT / "benchmarks" / "learning_curves.yaml"
DATA_DIR = ROOT / "benchmarks" / "data"
CURVES_FILE = "learning_curves.jsonl"
META_FILE = "learning_curves.meta.json"
#: Metrics kept per evaluation (without the eval_/test_ prefix).
VAL_METRICS = ("loss", "loss_bbox", "loss_iou", "loss_ce", "map", "map_50", "recall", "iou_mean")
TEST_METRICS = ("loss_bbox", "map", "map_50", "map_75", "recall", "iou_mean")


def load_grid(path: Path) -> dict[str, Any]:
    """The grid YAML: `space_file` (the base run), `grid` {dotted key: values}, `seeds`."""
    from detr_core.yaml_io import load_yaml_mapping

    raw = load_yaml_mapping(path)
    raw["space_file"] = str((path.parent / raw["space_file"]).resolve())
    return raw


def grid_points(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, as flat dotted run-config overrides."""
    keys = list(grid["grid"])
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(grid["grid"][k] for k in keys))]


def base_run(space_file: str) -> dict[str, Any]:
    """The run config the shipped search's trials start from (its spec's base)."""
    from search.spec_loading import load_search_spec

    return load_search_spec(space_file).base


def _round(value: Any) -> Any:
    return None if value is None else float(f"{value:.6g}")


def train_point(task: tuple[dict[str, Any], dict[str, Any], int]) -> dict[str, Any]:
    """One grid run (in a worker process): train, return its compact curve."""
    import torch

    from detr_core.config import apply_overrides, run_config_from_dict
    from detr_core.eval_history import read_eval_history
    from detr_core.train import train_run

    base, params, seed = task
    raw = apply_overrides(base, {**params, "seed": seed, "num_threads": 1,
                                 "evaluation.test_during_training": True})
    config = run_config_from_dict(raw, source=config_key(params))
    torch.set_num_threads(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="curve-") as folder:
        train_run(config, folder, evaluate_test=False)
        rows = read_eval_history(folder)
    return {
        "key": config_key(params), "params": params, "seed": seed,
        "steps": [int(r["step"]) for r in rows],
        "val": {m: [_round(r.get(f"eval_{m}")) for r in rows] for m in VAL_METRICS},
        "test": {m: [_round(r.get(f"test_{m}")) for r in rows] for m in TEST_METRICS},
        "wall_s": round(time.perf_counter() - started, 1),
    }


def read_curves(path: Path) -> list[dict[str, Any]]:
    """The recorded runs (torn last line skipped)."""
    if not path.is_file():
        return []
    runs = []
    for line in path.read_text().splitlines():
        try:
            runs.append(json.loads(line))
        except ValueError:
            continue
    return runs


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_meta(out_dir: Path, grid_path: Path, grid: dict[str, Any], base: dict[str, Any]
               ) -> None:
    """Provenance of the table: command, commit, checkpoint hash, grid, machine."""
    from detr_core.builtin_models import resolve_checkpoint

    checkpoint = base.get("model", {}).get("checkpoint")
    weights = Path(resolve_checkpoint(checkpoint)) / "model.safetensors" if checkpoint else None
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=False).stdout.strip()
    meta = {
        "command": f"python benchmarks/learning_curves.py --grid {grid_path.relative_to(ROOT)}",
        "commit": commit,
        "checkpoint": checkpoint,
        "checkpoint_sha256": _sha256(weights) if weights and weights.is_file() else None,
        "space_file": str(Path(grid["space_file"]).relative_to(ROOT)),
        "grid": grid["grid"], "seeds": grid["seeds"],
        "budget_steps": base.get("training_args", {}).get("max_steps"),
        "threads_per_run": 1,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": multiprocessing.cpu_count()},
    }
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=DEFAULT_GRID)
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="at most this many new runs")
    args = parser.parse_args(argv)

    grid = load_grid(args.grid)
    base = base_run(grid["space_file"])
    args.out.mkdir(parents=True, exist_ok=True)
    curves_path = args.out / CURVES_FILE
    done = {(r["key"], r["seed"]) for r in read_curves(curves_path)}
    todo = [(base, params, seed) for seed in grid["seeds"] for params in grid_points(grid)
            if (config_key(params), seed) not in done]
    if args.limit is not None:
        todo = todo[:args.limit]
    total = len(grid_points(grid)) * len(grid["seeds"])
    print(f"{len(done)} of {total} runs recorded; {len(todo)} to run now with "
          f"{args.workers} workers", flush=True)
    if done and (args.out / META_FILE).is_file():
        previous = json.loads((args.out / META_FILE).read_text())
        current_grid = {"grid": grid["grid"], "seeds": grid["seeds"]}
        if {"grid": previous["grid"], "seeds": previous["seeds"]} != current_grid:
            print("error: the recorded runs used another grid; use another --out",
                  file=sys.stderr)
            return 2
    else:
        write_meta(args.out, args.grid.resolve(), grid, base)
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers, maxtasksperchild=1) as pool, \
            open(curves_path, "a", encoding="utf-8") as out:
        for n, run in enumerate(pool.imap_unordered(train_point, todo), start=1):
            out.write(json.dumps(run, separators=(",", ":")) + "\n")
            out.flush()
            best = min(run["val"]["loss_bbox"])
            print(f"[{len(done) + n}/{total}] {run['key']} seed {run['seed']}: "
                  f"{run['wall_s']:.0f} s, best val loss_bbox {best:.4f}, "
                  f"last test mAP@.5 {run['test']['map_50'][-1]:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
