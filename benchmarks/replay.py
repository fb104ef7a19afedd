"""Replay recorded learning curves through the real Ray Tune stack: a tabular search benchmark.

Tabular HPO benchmarks (HPOBench, LCBench, YAHPO) train every configuration of a grid once per
seed and keep each whole curve; a searcher is then evaluated by *replaying* those curves instead
of training: identical noise for every searcher, thousands of searches for the price of one
grid. `benchmarks/learning_curves.py` records the curves of this project's embedded default;
this module replays them.

- `CurveTable`: the recorded runs, one `Curve` (steps; val and test metrics at each evaluation)
  per grid point and seed, plus optional *scoring* seeds recorded for some grid points only
  (racing: more seeds for the contenders), which score what a search picks but are never
  replayed; `snap` maps any sampled config to the nearest grid point (log scale
  for a numeric key whose grid spans a decade or more), so a search space with continuous
  ranges can be replayed on a grid.
- `replay_trial`: a Tune function trainable that reports a recorded curve step by step, with the
  names the real trainable reports (`eval_*`, `step`, `total_steps`); ASHA, the Optuna
  searchers and the `ConcurrencyLimiter` see what they would see in a real search.
- `SimulatedClock`: the order of events. Concurrent trials must interleave as they would in
  real time, but wall time is noisy (two replays of one seed once gave 72 and 69 results). So
  each trial lives on a simulated clock in optimizer steps: it starts when the trial whose slot
  it takes ended, and reports the evaluation of step s at its start + s. A Ray actor hands out
  turns in that order (ties: the trial created first), one report at a time: the next turn only
  once the driver has processed the last report (ASHA decided, the searcher heard) and every
  running trial has said when its next report is due. The same seed gives the same trace.
- `ReplayLog`: a Tune callback recording every reported step, so the compute a search spent
  (the sum of the steps its trials consumed) and what it would have exported can be traced
  over time; it also tells the clock what the driver has processed.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray.cloudpickle

from search.store.layout import as_float

# Tune ships the trainable and its parameters to Ray workers by pickle. This module lives in
# benchmarks/ (not an installed package), so it travels by value: a worker needs no path to it.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


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


def _curve_of(run: Mapping[str, Any]) -> Curve:
    return Curve(tuple(int(s) for s in run["steps"]),
                 {m: tuple(v) for m, v in run["val"].items()},
                 {m: tuple(v) for m, v in run["test"].items()})


def meta_file(curves: str | Path) -> Path:
    """The provenance file beside a table: `x.jsonl` -> `x.meta.json`."""
    curves = Path(curves)
    return curves.with_name(f"{curves.stem}.meta.json")


def read_meta(curves: str | Path) -> dict[str, Any]:
    """A table's provenance (`meta_file`): command, commit, grid, seeds...; {} if absent."""
    path = meta_file(curves)
    return json.loads(path.read_text()) if path.is_file() else {}


def planned_runs(meta: Mapping[str, Any]) -> int:
    """How many runs a table's provenance plans: its configurations (the listed `points`, or
    every combination of the `grid`'s values) times its seeds; 0 if it gives none."""
    if meta.get("points"):
        configs = len(meta["points"])
    elif meta.get("grid"):
        configs = math.prod(len(values) for values in meta["grid"].values())
    else:
        configs = 0
    return configs * len(meta.get("seeds") or [])


def read_runs(path: str | Path) -> list[dict[str, Any]]:
    """The recorded runs of a JSON-lines table (blank lines skipped)."""
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@dataclass
class CurveTable:
    """Recorded curves by (grid point key, seed), with the grid's values per key.

    `curves` are replayed: every grid point has every seed of `seeds`. `scoring` holds curves
    of further seeds for some grid points (`add_scoring_runs`); `seeds_of` lists a point's
    seeds of both kinds and `scored_curve` finds either."""

    curves: dict[tuple[str, int], Curve]
    grid: dict[str, list[Any]]
    seeds: list[int]
    points: list[dict[str, Any]] = field(default_factory=list)
    scoring: dict[tuple[str, int], Curve] = field(default_factory=dict)

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
            curves[(key, int(run["seed"]))] = _curve_of(run)
        for values in grid.values():
            values.sort(key=lambda v: (isinstance(v, str), v))
        seeds = sorted({seed for _, seed in curves})
        return cls(curves, grid, seeds, list(points.values()))

    @classmethod
    def from_jsonl(cls, path: str | Path) -> CurveTable:
        return cls.from_runs(read_runs(path))

    def add_scoring_runs(self, runs: Iterable[Mapping[str, Any]], source: str | Path) -> None:
        """Add runs of further seeds for some of the grid's points (`source`: their file, for
        errors). Each must be a recorded point, a seed not replayed, with the point's steps."""
        from detr_core.files.errors import UserInputError

        for number, run in enumerate(runs, start=1):
            key, seed = config_key(run["params"]), int(run["seed"])
            where = f"run {number} ({key}, seed {seed})"
            if (key, self.seeds[0]) not in self.curves:
                raise UserInputError("not a configuration of the replayed curves",
                                     source=source, key=where)
            if seed in self.seeds:
                raise UserInputError(f"seed {seed} is one of the replayed seeds {self.seeds}",
                                     source=source, key=where)
            curve = _curve_of(run)
            if curve.steps != self.curves[(key, self.seeds[0])].steps:
                raise UserInputError("evaluated at other steps than the replayed curves",
                                     source=source, key=where)
            self.scoring[(key, seed)] = curve

    def seeds_of(self, key: str) -> list[int]:
        """Every seed recorded for a grid point: the replayed ones and its scoring seeds."""
        return sorted({*self.seeds, *(seed for k, seed in self.scoring if k == key)})

    def scored_curve(self, key: str, seed: int) -> Curve:
        """A point's curve of any of its seeds (`seeds_of`)."""
        curve = self.curves.get((key, seed))
        return curve if curve is not None else self.scoring[(key, seed)]

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


def reported_steps(steps: Sequence[int], every: int | None) -> list[int]:
    """The indices of the recorded evaluations a run evaluating every `every` steps makes (and
    the last one, where a run always evaluates); all of them when `every` is None."""
    if not every:
        return list(range(len(steps)))
    return [i for i, step in enumerate(steps) if step % every == 0 or i == len(steps) - 1]


def replay_trial(config: dict[str, Any], *, table: CurveTable, seed: int,
                 seconds_per_step: float = 0.0, clock: Any = None,
                 every: int | None = None) -> None:
    """Tune trainable: report the recorded curve of `config`'s grid point for `seed`.

    With a `clock` (a `SimulatedClock` actor) each report waits for its turn on the simulated
    clock; without one, the trial sleeps `seconds_per_step` per optimizer step (wall-clock
    order: not reproducible). `every`: report only the evaluations a run with that
    `logging_steps` makes (a table recorded every 125 steps replays a search evaluating every
    250 as that search sees it).
    """
    import ray
    from ray import tune

    params = table.snap(config)
    curve = table.curve(params, seed)
    trial_id = tune.get_context().get_trial_id()
    start = ray.get(clock.start_of.remote(trial_id)) if clock is not None else 0
    previous = 0
    for index in reported_steps(curve.steps, every):
        step = curve.steps[index]
        if clock is not None:
            ray.get(clock.turn.remote(trial_id, start + step))
        else:
            time.sleep((step - previous) * seconds_per_step)
        previous = step
        metrics = {f"eval_{name}": values[index] for name, values in curve.val.items()
                   if values[index] is not None}
        tune.report({**metrics, "step": step, "total_steps": curve.steps[-1],
                     "grid_point": config_key(params), "simulated_time": start + step})


class ClockState:
    """The bookkeeping of `SimulatedClock`, apart from Ray (see the module docstring)."""

    def __init__(self, concurrency: int, num_samples: int) -> None:
        self.concurrency = concurrency
        self.num_samples = num_samples
        self.now = 0
        self.live: dict[str, int] = {}  # running trial -> its rank in creation order
        self.start: dict[str, int] = {}  # trial -> simulated time it started
        self.due: dict[str, int] = {}  # trial -> simulated time of its next report
        self.ended = 0
        self.unprocessed: str | None = None  # a granted report the driver has not processed

    def may_report(self, trial_id: str) -> bool:
        """True when `trial_id`'s next report is the earliest due and nothing is in flight."""
        running = min(self.concurrency, self.num_samples - self.ended)
        if self.unprocessed is not None or len(self.live) != running:
            return False
        if set(self.due) != set(self.live):
            return False  # a running trial has not said when its next report is due
        return min(self.due, key=lambda t: (self.due[t], self.live[t])) == trial_id

    def register(self, trial_id: str, rank: int) -> None:
        """A trial starts now (in the slot of the trial that ended last)."""
        self.live[trial_id] = rank
        self.start[trial_id] = self.now

    def grant(self, trial_id: str) -> None:
        self.now = self.due.pop(trial_id)
        self.unprocessed = trial_id

    def end(self, trial_id: str) -> None:
        if trial_id in self.live:
            del self.live[trial_id]
            self.due.pop(trial_id, None)
            self.ended += 1
        if self.unprocessed == trial_id:
            self.unprocessed = None


def simulated_clock(concurrency: int, num_samples: int, timeout_s: float = 300.0) -> Any:
    """A `SimulatedClock` actor for one replayed search (call after `ray.init`)."""
    import ray

    @ray.remote(num_cpus=0)
    class SimulatedClock:
        """Turns on the simulated clock for the trials of one replayed search."""

        def __init__(self) -> None:
            self.state = ClockState(concurrency, num_samples)
            self.changed = asyncio.Condition()

        async def register(self, trial_id: str, rank: int) -> None:
            """The driver starts a trial, the `rank`-th it created (ties go to the older)."""
            async with self.changed:
                self.state.register(trial_id, rank)
                self.changed.notify_all()

        async def start_of(self, trial_id: str) -> int:
            """The trial's simulated start time (when the slot it took was freed)."""
            return self.state.start[trial_id]

        async def turn(self, trial_id: str, due: int) -> int:
            """Wait until the report due at `due` is the next event; then it may be sent."""
            async with self.changed:
                self.state.due[trial_id] = due
                self.changed.notify_all()
                try:
                    await asyncio.wait_for(self.changed.wait_for(
                        lambda: self.state.may_report(trial_id)), timeout_s)
                except asyncio.TimeoutError:
                    raise RuntimeError(
                        f"simulated clock stuck: {trial_id} due at {due}, running "
                        f"{sorted(self.state.live)}, due {self.state.due}, ended "
                        f"{self.state.ended}, unprocessed {self.state.unprocessed}") from None
                self.state.grant(trial_id)
                return self.state.now

        async def processed(self, trial_id: str, done: bool) -> None:
            """The driver has processed `trial_id`'s report (and stopped it, if `done`)."""
            async with self.changed:
                if self.state.unprocessed == trial_id:
                    self.state.unprocessed = None
                if done:
                    self.state.end(trial_id)
                self.changed.notify_all()

        async def ended(self, trial_id: str) -> None:
            """The trial finished, was stopped or failed."""
            async with self.changed:
                self.state.end(trial_id)
                self.changed.notify_all()

    return SimulatedClock.remote()


@dataclass(frozen=True)
class Report:
    """One reported evaluation of a replayed trial, in the order Tune received them."""

    order: int
    trial_id: str
    grid_point: str
    step: int
    value: float | None
    simulated_time: int | None = None


def _replay_log_class() -> type:
    from ray.tune import Callback

    class ReplayLog(Callback):
        """Every result Tune receives, in order (`reports`), and which trials completed."""

        def __init__(self, metric: str, clock: Any = None) -> None:
            self.metric = metric
            self.clock = clock
            self.reports: list[Report] = []
            self.completed: set[str] = set()

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            # called before the trial's code runs (fresh or reused actor); `trials` is in
            # creation order
            self._tell_clock("register", trial.trial_id, trials.index(trial))

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            self.reports.append(Report(len(self.reports), trial.trial_id,
                                       str(result["grid_point"]), int(result["step"]),
                                       as_float(result.get(self.metric)),
                                       result.get("simulated_time")))
            self._tell_clock("processed", trial.trial_id, bool(result.get("done")))

        def on_trial_complete(self, iteration: int, trials: list, trial: Any,
                              **info: Any) -> None:
            self.completed.add(trial.trial_id)
            self._tell_clock("ended", trial.trial_id)

        def on_trial_error(self, iteration: int, trials: list, trial: Any,
                           **info: Any) -> None:
            self._tell_clock("ended", trial.trial_id)

        def _tell_clock(self, what: str, *args: Any) -> None:
            if self.clock is not None:
                import ray

                ray.get(getattr(self.clock, what).remote(*args))

    return ReplayLog


def replay_log(metric: str, clock: Any = None) -> Any:
    """A Tune callback recording the replayed results (`.reports`, `.completed`), telling the
    `clock` (if any) what the driver has processed."""
    return _replay_log_class()(metric, clock)
