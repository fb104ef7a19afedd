"""Record the learning-curve table the search benchmark replays: a full grid, every seed.

    python benchmarks/learning_curves.py                      # resume the grid where it stopped
    python benchmarks/learning_curves.py --limit 10           # at most 10 more runs now
    python benchmarks/learning_curves.py --grid benchmarks/learning_curves_v2.yaml --workers 2

What a tabular HPO benchmark (HPOBench, LCBench, YAHPO) does: train every configuration of a
grid once per seed, at full budget, and keep its whole curve, so that any number of searches can
later be replayed on identical noise (`benchmarks/search_efficiency.py`). The base run is the
one the shipped search trains (`space_file` of the grid YAML: its base run config and
overrides); each grid point sets the grid's keys and the seed. Every evaluation records val
*and* test metrics (`evaluation.test_during_training`), so whatever step a strategy would
export can be scored on the test split.

The grid YAML names its table (`name`, default `learning_curves`) and may fix run-config keys
for every run (`fixed`, e.g. `training_args.logging_steps: 125`, `ema: {}`). Every numeric
`eval_*` (val) and `test_*` metric of every evaluation is kept, averaged-weight ones
(`ema_*`) included; the first tables kept a fixed list.

Resumable: each finished run is appended to `benchmarks/data/<name>.jsonl` at once, with the
commit it ran at, and runs already there are skipped; runs go seed by seed, so a partial table
is a complete grid for the first seeds. `<name>.meta.json` records the command, the commit the
table was started at, the sha256 of the checkpoint the base fine-tunes, the grid and the
machine. Runs use one thread each and `--workers` processes side by side (2 on this 2-core
machine). `--stop-after SECONDS` starts no new run after that long (a chunk that fits a
session; the runs under way finish and are kept).
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.replay import config_key, meta_file  # noqa: E402
from detr_core.config.run_config import apply_overrides  # noqa: E402
from detr_core.files.errors import exit_on_user_error  # noqa: E402

DEFAULT_GRID = ROOT / "benchmarks" / "learning_curves.yaml"
DATA_DIR = ROOT / "benchmarks" / "data"
DEFAULT_NAME = "learning_curves"
#: Per-evaluation numbers that are not metrics of the model.
SKIPPED_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")


def curves_file(name: str) -> str:
    """The table's JSON-lines file (`learning_curves.jsonl`)."""
    return f"{name}.jsonl"


def load_grid(path: Path) -> dict[str, Any]:
    """The grid YAML: `space_file` (the base run), `grid` {dotted key: values} or `points` (a
    list of {dotted key: value}: chosen configurations instead of every combination), `seeds`,
    optional `name` (the table's file stem) and `fixed` {dotted key: value} for every run."""
    from detr_core.files.errors import UserInputError
    from detr_core.files.file_io import load_yaml_mapping

    raw = load_yaml_mapping(path)
    raw["space_file"] = str((path.parent / raw["space_file"]).resolve())
    raw.setdefault("name", DEFAULT_NAME)
    raw["fixed"] = dict(raw.get("fixed") or {})
    if ("grid" in raw) == ("points" in raw):
        raise UserInputError("give either `grid` (values per key) or `points` (a list of "
                             "configurations)", source=path)
    raw.setdefault("grid", None)
    raw.setdefault("points", None)
    if raw["points"] is not None and not (
            isinstance(raw["points"], list) and raw["points"]
            and all(isinstance(p, dict) and p for p in raw["points"])):
        raise UserInputError("must be a non-empty list of mappings {dotted key: value}",
                             source=path, key="points")
    return raw


def grid_points(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """The configurations to run, as flat dotted run-config overrides: the listed `points`,
    or every combination of the grid's values."""
    if grid.get("points") is not None:
        return [dict(point) for point in grid["points"]]
    keys = list(grid["grid"])
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(grid["grid"][k] for k in keys))]


def base_run(space_file: str) -> dict[str, Any]:
    """The run config the shipped search's trials start from (its spec's base)."""
    from search.space.spec import load_search_spec

    return load_search_spec(space_file).base


def _round(value: Any) -> Any:
    return None if value is None else float(f"{value:.6g}")


def split_metrics(rows: list[dict[str, Any]], prefix: str) -> dict[str, list[Any]]:
    """{metric without prefix: its value at every evaluation} for one prefix (`eval_`)."""
    names = sorted({k for r in rows for k, v in r.items() if k.startswith(prefix)
                    and isinstance(v, int | float | type(None))
                    and not k.endswith(SKIPPED_SUFFIXES)})
    return {n.removeprefix(prefix): [_round(r.get(n)) for r in rows] for n in names}


def current_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=False).stdout.strip()


def train_point(task: tuple[dict[str, Any], dict[str, Any], int]) -> dict[str, Any]:
    """One grid run (in a worker process): train, return its compact curve."""
    import torch

    from detr_core.config.run_config import apply_overrides, run_config_from_dict
    from detr_core.train import train_run
    from detr_core.training.events import read_eval_history

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
        "val": split_metrics(rows, "eval_"),
        "test": split_metrics(rows, "test_"),
        "wall_s": round(time.perf_counter() - started, 1),
        "commit": current_commit(),
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


def _shown(path: Path) -> str:
    """A path relative to the repository when it is inside it, else as it is."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def write_meta(path: Path, grid_path: Path, grid: dict[str, Any], base: dict[str, Any]
               ) -> None:
    """Provenance of the table: command, commit, checkpoint hash, grid, machine."""
    from detr_core.files.builtin_models import resolve_checkpoint

    checkpoint = base.get("model", {}).get("checkpoint")
    weights = Path(resolve_checkpoint(checkpoint)) / "model.safetensors" if checkpoint else None
    commit = current_commit()
    meta = {
        "command": f"python benchmarks/learning_curves.py --grid {_shown(grid_path)}",
        "commit": commit,
        "checkpoint": checkpoint,
        "checkpoint_sha256": _sha256(weights) if weights and weights.is_file() else None,
        "space_file": _shown(Path(grid["space_file"])),
        "grid": grid["grid"], **({"points": grid["points"]} if grid["points"] else {}),
        "seeds": grid["seeds"], "fixed": grid["fixed"],
        "budget_steps": base.get("training_args", {}).get("max_steps"),
        "threads_per_run": 1,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": multiprocessing.cpu_count()},
    }
    path.write_text(json.dumps(meta, indent=2) + "\n")


def run_parallel(tasks: list[Any], workers: int, deadline: float | None
                 ) -> Iterator[dict[str, Any]]:
    """`train_point` of each task in `workers` fresh processes, results as they finish; no
    task is started once the deadline (monotonic clock) has passed."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    queue = list(tasks)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
        running: set[Any] = set()
        while queue or running:
            while queue and len(running) < workers:
                if deadline is not None and time.monotonic() > deadline:
                    print(f"--stop-after reached: {len(queue)} runs left for later", flush=True)
                    queue.clear()
                    break
                running.add(pool.submit(train_point, queue.pop(0)))
            if not running:
                break
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=DEFAULT_GRID)
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="at most this many new runs")
    parser.add_argument("--stop-after", type=float, default=None, metavar="SECONDS",
                        help="start no new run after this many seconds (runs under way finish)")
    args = parser.parse_args(argv)

    grid = load_grid(args.grid)
    base = apply_overrides(base_run(grid["space_file"]), grid["fixed"])
    args.out.mkdir(parents=True, exist_ok=True)
    curves_path = args.out / curves_file(grid["name"])
    meta_path = meta_file(curves_path)
    done = {(r["key"], r["seed"]) for r in read_curves(curves_path)}
    todo = [(base, params, seed) for seed in grid["seeds"] for params in grid_points(grid)
            if (config_key(params), seed) not in done]
    if args.limit is not None:
        todo = todo[:args.limit]
    total = len(grid_points(grid)) * len(grid["seeds"])
    print(f"{len(done)} of {total} runs recorded; {len(todo)} to run now with "
          f"{args.workers} workers", flush=True)
    if done and meta_path.is_file():
        previous = json.loads(meta_path.read_text())
        current_grid = {"grid": grid["grid"], "points": grid["points"], "seeds": grid["seeds"],
                        "fixed": grid["fixed"]}
        recorded = {"grid": previous["grid"], "points": previous.get("points"),
                    "seeds": previous["seeds"], "fixed": previous.get("fixed", {})}
        if recorded != current_grid:
            print(f"error: {curves_path}: the recorded runs used another grid; give the grid "
                  "another `name`", file=sys.stderr)
            return 2
    else:
        write_meta(meta_path, args.grid.resolve(), grid, base)
    deadline = None if args.stop_after is None else time.monotonic() + args.stop_after
    with open(curves_path, "a", encoding="utf-8") as out:
        for n, run in enumerate(run_parallel(todo, args.workers, deadline), start=1):
            out.write(json.dumps(run, separators=(",", ":")) + "\n")
            out.flush()
            best = min(v for v in run["val"]["loss_bbox"] if v is not None)
            print(f"[{len(done) + n}/{total}] {run['key']} seed {run['seed']}: "
                  f"{run['wall_s']:.0f} s, best val loss_bbox {best:.4f}, "
                  f"last test mAP@.5 {run['test']['map_50'][-1]:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
