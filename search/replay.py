"""Replay recorded learning curves through the real Ray Tune stack: a tabular search benchmark.

Tabular HPO benchmarks (HPOBench, LCBench, YAHPO) train every configuration of a grid once per
seed and keep each whole curve; a searcher is then evaluated by *replaying* those curves instead
of training: identical noise for every searcher, thousands of searches for the price of one
grid. `benchmarks/learning_curves.py` records the curves of this project's embedded default;
this module replays them.

- `CurveTable`: the recorded runs, one `Curve` (steps; val and test metrics at each evaluation)
  per grid point and seed; `snap` maps any sampled config to the nearest grid point (log scale
  for a numeric key whose grid spans a decade or more), so a search space with continuous
  ranges can be replayed on a grid.
- `replay_trial`: a Tune function trainable that reports a recorded curve step by step, with the
  names the real trainable reports (`eval_*`, `step`, `total_steps`), sleeping a fixed time per
  optimizer step, so concurrent trials interleave as they would in real time; ASHA, the Optuna
  searchers and the `ConcurrencyLimiter` see what they would see in a real search.
- `ReplayLog`: a Tune callback recording every reported step, so the compute a search spent
  (the sum of the steps its trials consumed) and what it would have exported can be traced
  over time.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.values import as_float


def config_key(params: Mapping[str, Any]) -> str:
    """A stable text key of one grid point: sorted `key=json(value)` pairs."""
    return "|".join(f"{k}={json.dumps(params[k])}" for k in sorted(params))


@dataclass(frozen=True)
class Curve:
    """One recorded run: evaluation steps, and val / test metrics (bare names) at each."""

    steps: tuple[int, ...]
    val: Mapping[str, tuple[float | None, ...]]
    test: Mapping[str, tuple[float | None, ...]]

    def index_of(self, step: int) -> int:
        return self.steps.index(step)


@dataclass
class CurveTable:
    """Recorded curves by (grid point key, seed), with the grid's values per key."""

    curves: dict[tuple[str, int], Curve]
    grid: dict[str, list[Any]]
    seeds: list[int]
    points: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_runs(cls, runs: Iterable[Mapping[str, Any]]) -> CurveTable:
        curves: dict[tuple[str, int], Curve] = {}
        grid: dict[str, list[Any]] = {}
        points: dict[str, dict[str, Any]] = {}
        for run in runs:
            params = dict(run["params"])
            key = config_key(params)
            points.setdefault(key, params)
            for name, value in params.items():
                if value not in grid.setdefault(name, []):
                    grid[name].append(value)
            curves[(key, int(run["seed"]))] = Curve(
                tuple(int(s) for s in run["steps"]),
                {m: tuple(v) for m, v in run["val"].items()},
                {m: tuple(v) for m, v in run["test"].items()})
        for values in grid.values():
            values.sort(key=lambda v: (isinstance(v, str), v))
        seeds = sorted({seed for _, seed in curves})
        return cls(curves, grid, seeds, list(points.values()))

    @classmethod
    def from_jsonl(cls, path: str | Path) -> CurveTable:
        lines = Path(path).read_text().splitlines()
        return cls.from_runs(json.loads(line) for line in lines if line.strip())

    def complete_points(self) -> list[dict[str, Any]]:
        """Grid points recorded for every seed (a partly recorded grid replays these only)."""
        return [p for p in self.points
                if all((config_key(p), s) in self.curves for s in self.seeds)]

    def snap(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The grid point nearest to a sampled config (only the grid's keys are read)."""
        return {key: _nearest(config[key], values) for key, values in self.grid.items()}

    def curve(self, params: Mapping[str, Any], seed: int) -> Curve:
        return self.curves[(config_key(params), seed)]

    @property
    def budget(self) -> int:
        """The full budget in optimizer steps: the last step of the longest curve."""
        return max(c.steps[-1] for c in self.curves.values())


def _nearest(value: Any, values: Sequence[Any]) -> Any:
    numeric = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if value in values or len(numeric) != len(values) or as_float(value) is None:
        if value not in values:
            raise KeyError(f"{value!r} is not one of the grid's values {list(values)}")
        return value
    log = min(numeric) > 0 and max(numeric) / min(numeric) >= 10 and value > 0
    distance = (lambda v: abs(math.log(v) - math.log(value))) if log else (
        lambda v: abs(v - value))
    return min(numeric, key=distance)


def replay_trial(config: dict[str, Any], *, table: CurveTable, seed: int,
                 seconds_per_step: float) -> None:
    """Tune trainable: report the recorded curve of `config`'s grid point for `seed`."""
    from ray import tune

    params = table.snap(config)
    curve = table.curve(params, seed)
    previous = 0
    for index, step in enumerate(curve.steps):
        time.sleep((step - previous) * seconds_per_step)
        previous = step
        metrics = {f"eval_{name}": values[index] for name, values in curve.val.items()
                   if values[index] is not None}
        tune.report({**metrics, "step": step, "total_steps": curve.steps[-1],
                     "grid_point": config_key(params)})


@dataclass(frozen=True)
class Report:
    """One reported evaluation of a replayed trial, in the order Tune received them."""

    order: int
    trial_id: str
    grid_point: str
    step: int
    value: float | None


def _replay_log_class() -> type:
    from ray.tune import Callback

    class ReplayLog(Callback):
        """Every result Tune receives, in order (`reports`), and which trials completed."""

        def __init__(self, metric: str) -> None:
            self.metric = metric
            self.reports: list[Report] = []
            self.completed: set[str] = set()

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            self.reports.append(Report(len(self.reports), trial.trial_id,
                                       str(result["grid_point"]), int(result["step"]),
                                       as_float(result.get(self.metric))))

        def on_trial_complete(self, iteration: int, trials: list, trial: Any,
                              **info: Any) -> None:
            self.completed.add(trial.trial_id)

    return ReplayLog


def replay_log(metric: str) -> Any:
    """A Tune callback recording the replayed results (`.reports`, `.completed`)."""
    return _replay_log_class()(metric)
