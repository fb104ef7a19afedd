"""Prove the search: this project's Optuna+ASHA against grid, random and stock baselines.

    python benchmarks/search_efficiency.py                       # the full run (>= 20 seeds each)
    python benchmarks/search_efficiency.py --quick --out DIR     # replay only, few seeds (minutes)

Replays the recorded learning curves of `benchmarks/data/learning_curves_v2.jsonl` (the first
grid, `learning_curves.jsonl`, with `--curves`; made by
`benchmarks/learning_curves.py`) through the real Ray Tune stack (`benchmarks.replay`): the real
`Tuner`, `ASHAScheduler`, `ConcurrencyLimiter` and searchers, with the shipped search's settings
(`settings_from` in benchmarks/search_efficiency.yaml: grace period, reduction factor, Optuna
startup trials, concurrency, metric) over the grid's dimensions. Strategies:

- `asha_tpe`: this project's searcher (`AshaAwareOptunaSearch`: TPE, ASHA-stopped trials told
  PRUNED, finished trials told their best value) + ASHA;
- `stock_optuna_asha`: Ray's `OptunaSearch` (TPE; ASHA-stopped trials told COMPLETE with their
  partial-budget value) + ASHA;
- `random_asha`: Tune's random search (`BasicVariantGenerator`) + ASHA;
- `asha_tpe_rung` (not in the default set, an experiment): ours, but every trial, stopped or
  finished, told COMPLETE with its value at the first rung, so TPE compares all trials at one
  fidelity. On the development seeds (`--seeds 0-9 --every-curve-seed --strategies
  asha_tpe,asha_tpe_rung`; scored on 3 seeds, ASHA 500 / 2) it did no better: 12 of 30
  searches within the floor for both, median regret 0.057 for both, compute 15.7 % against
  15.5 %;
- `random_fifo`: what `Trainer.hyperparameter_search(backend="ray")` does (transformers
  5.24 `integrations/integration_utils.py::run_hp_search_ray`: `ray.tune.run(config=
  trainer.hp_space(None), num_samples=n_trials)` with random sampling and no scheduler, then
  `analysis.get_best_trial(metric="objective", scope=os.getenv("RAY_SCOPE", "last"))`): every
  trial trains its whole budget and the winner is the best *last* value, trained to the end;
- `grid`: every grid point at full budget (the diary at its best), winner by best val value;
- sampler strategies (`experiment.searcher.sampler`, not in the default set): ours with
  another Optuna sampler, built by the product's own `search.space.build_sampler`:
  `asha_tpe_mv` (TPE with `multivariate` and `constant_liar`), `asha_gp` (Gaussian process),
  `asha_qmc` (quasi-Monte Carlo, a space-filling non-adaptive baseline);
- variants of any strategy, by suffix: `+n<N>` runs it with N trials instead of
  `num_samples` (more exploring for the same compute as a finalists stage), `+f<K>x<S>` adds
  the product's finalists stage (`search.running.finalists`) replayed: after the search, the K
  best distinct configurations by best val value are trained again to max_t on S seeds the
  search did not see (the other replayed curve seeds, so S <= 2 on a 3-seed grid), the winner
  is the best *mean* best-val value over those runs, the export is its best run's best step,
  and K x S x max_t steps are added to the compute. Its choice is scored on the seeds neither
  the search nor the finalists trained (`finalist_scoring_seeds`). E.g.
  `asha_tpe+f3x2,asha_tpe+n24`.

Against random+FIFO (HF's default) the report states issue 34's two targets exactly: each
strategy's IQM regret [CI] at random+FIFO's compute (and whether the intervals are apart),
and the least compute at which its IQM regret reaches random+FIFO's final one.

What a user gets is also summarised as the interquartile mean (IQM: the mean of the middle
half, robust to a few lucky or unlucky searches) of the regret over searcher seeds, at the end
and at a few compute budgets, with a bootstrap 95 % confidence interval (10,000 resamples of
the searches, fixed seed).

Definitions (fixed by the issue): the quality of a config at a step is its test mAP@.5 there;
the grid optimum is the best mean-over-seeds test mAP@.5 of any grid point at its best-val step;
the noise floor is the median over grid points of the across-seed std of that number; the
grid's compute is one run per grid point; a strategy's choice (the config and step it would
export: its best val step, or its last step for `random_fifo`) is scored on the seeds it did
not search with (mean test mAP@.5 over them). `--scoring-seeds` adds a table of further seeds
for some configurations (racing: the contenders; `benchmarks/learning_curves_schedule_free_
seeds.yaml`): never replayed, they enter every configuration's mean and spread above, so the
optimum is not the luck of three seeds. Searcher seed i searches on curve seed i mod S
(`--every-curve-seed`: on each of them).
Compute is the sum of the steps the trials consumed. A seed that never gets within the noise
floor of the grid optimum counts as infinite compute.

Writes `search_efficiency.json` (schema in the issue), `search_efficiency.md` and
`search_efficiency.png` (regret vs compute, median and interquartile range over seeds) to
`--out` (default results/benchmarks).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.replay import (  # noqa: E402
    CurveTable,
    config_key,
    meta_file,
    planned_runs,
    read_meta,
    read_runs,
    replay_log,
    replay_trial,
    reported_steps,
    simulated_clock,
)
from detr_core.files.errors import UserInputError, exit_on_user_error  # noqa: E402

CONFIG = ROOT / "benchmarks" / "search_efficiency.yaml"
CURVES = ROOT / "benchmarks" / "data" / "learning_curves_v2.jsonl"
QUALITY = "map_50"  # test metric a choice is scored by


def quality_metric(metric: str) -> str:
    """The test metric a choice is scored by: mAP@.5 of the weights the objective exports
    (an averaged-weight objective, `eval_ema_*`, exports the averaged weights)."""
    from detr_core.config.metric_names import is_ema_metric

    return f"ema_{QUALITY}" if is_ema_metric(metric) else QUALITY
STRATEGIES = ("asha_tpe", "stock_optuna_asha", "random_asha", "random_fifo")
#: compute budgets (fractions of the grid's) at which the IQM regret is reported
REGRET_BUDGETS = (0.10, 0.15, 0.22, 0.30)
BOOTSTRAP_RESAMPLES = 10_000


# ---------------------------------------------------------------------------------------------
# the table's own numbers: grid optimum, noise floor, grid strategy


def best_val_step(curve: Any, metric: str, mode: str, every: int | None = None) -> int:
    """Index of the best val value of a curve (first one on ties), among the evaluations a run
    evaluating every `every` steps reports (`reported_steps`; all of them when None)."""
    from detr_core.config.metric_names import bare_name, is_better

    values = curve.val[bare_name(metric)]
    best = None
    for index in reported_steps(curve.steps, every):
        if values[index] is not None and (best is None or is_better(values[index],
                                                                    values[best], mode)):
            best = index
    return best if best is not None else len(values) - 1


def quality(table: CurveTable, point_key: str, step: int, seeds: Sequence[int],
            metric: str = "") -> float:
    """Mean test mAP@.5 of a grid point at `step` over `seeds` (of the weights `metric`
    exports: `quality_metric`)."""
    values = []
    for seed in seeds:
        curve = table.scored_curve(point_key, seed)
        values.append(curve.test[quality_metric(metric)][curve.index_of(step)])
    return statistics.fmean(v for v in values if v is not None)


@dataclass
class GridFacts:
    optimum: float
    optimum_point: str
    noise_floor: float
    grid_steps: int
    per_point: dict[str, float]


def grid_facts(table: CurveTable, metric: str, mode: str) -> GridFacts:
    """Grid optimum and noise floor, by the issue's definitions."""
    per_point, spreads = {}, []
    for point in table.complete_points():
        key = config_key(point)
        scores = []
        for seed in table.seeds_of(key):
            curve = table.scored_curve(key, seed)
            scores.append(curve.test[quality_metric(metric)][best_val_step(curve, metric,
                                                                           mode)])
        per_point[key] = statistics.fmean(scores)
        spreads.append(statistics.stdev(scores) if len(scores) > 1 else 0.0)
    best = max(per_point, key=per_point.get)
    return GridFacts(per_point[best], best, statistics.median(spreads), grid_steps_of(table),
                     per_point)


# ---------------------------------------------------------------------------------------------
# one replayed search


@dataclass
class Trace:
    """How a search's choice evolved with compute: (steps spent, regret of its choice)."""

    compute: list[int]
    regret: list[float]
    final_choice: str | None = None
    trained: list[str] = field(default_factory=list)  # grid points, in the order first seen
    scored_on_seen: int = 0  # 1: a finalists stage's choice had no seed left unseen to score on


@dataclass(frozen=True)
class StrategyName:
    """A strategy as `--strategies` names it: `base[+n<N>][+f<K>x<S>]`."""

    base: str
    num_samples: int | None = None  # trials, when not the benchmark's `num_samples`
    top: int = 0                     # finalists: K configurations...
    seeds: int = 0                   # ... each trained again on S unseen seeds

    @classmethod
    def parse(cls, name: str) -> StrategyName:
        base, *suffixes = name.split("+")
        num_samples, top, seeds = None, 0, 0
        for suffix in suffixes:
            try:
                if suffix.startswith("n"):
                    num_samples = int(suffix[1:])
                elif suffix.startswith("f"):
                    top, seeds = (int(x) for x in suffix[1:].split("x"))
                else:
                    raise ValueError(suffix)
            except ValueError:
                raise UserInputError(f"{name!r}: a suffix is +n<trials> or +f<K>x<S>, not "
                                     f"+{suffix}", key="--strategies") from None
            if (num_samples is not None and num_samples < 1) or (suffix[0] == "f" and (
                    top < 1 or seeds < 1)):
                raise UserInputError(f"{name!r}: counts must be >= 1", key="--strategies")
        if base not in KNOWN_BASES:
            raise UserInputError(f"{name!r}: unknown strategy {base!r} (one of "
                                 f"{', '.join(KNOWN_BASES)})", key="--strategies")
        return cls(base, num_samples, top, seeds)


def _other_seeds(table: CurveTable, seed: int, key: str) -> list[int]:
    """The seeds a choice of grid point `key` is scored on: all it has but the searched one."""
    return [s for s in table.seeds_of(key) if s != seed]


def trace_from_reports(table: CurveTable, reports: Sequence[Any], completed: set[str],
                       search_seed: int, optimum: float, metric: str, mode: str,
                       last_value_winner: bool) -> Trace:
    """Regret of what the search would export after each reported result."""
    from detr_core.config.metric_names import is_better

    latest_step: dict[str, int] = {}
    last: dict[str, Any] = {}
    budget_of: dict[str, int] = {}
    best = None  # (value, point, step) of the best val value so far
    trace = Trace([], [])
    for report in reports:
        if report.grid_point not in trace.trained:
            trace.trained.append(report.grid_point)
        latest_step[report.trial_id] = report.step
        last[report.trial_id] = report
        budget_of[report.trial_id] = table.curves[(report.grid_point, search_seed)].steps[-1]
        if last_value_winner:  # HF: among trials that trained to the end, the best last value
            finished = [r for t, r in last.items() if r.step >= budget_of[t]]
            choice = None
            for r in finished:
                if choice is None or is_better(r.value, choice.value, mode):
                    choice = r
            pick = (choice.grid_point, choice.step) if choice else None
        else:
            if best is None or is_better(report.value, best[0], mode):
                best = (report.value, report.grid_point, report.step)
            pick = (best[1], best[2]) if best else None
        trace.compute.append(sum(latest_step.values()))
        trace.regret.append(optimum - quality(table, pick[0], pick[1],
                                              _other_seeds(table, search_seed, pick[0]), metric)
                            if pick else math.inf)
        trace.final_choice = pick[0] if pick else None
    return trace


def finalist_scoring_seeds(table: CurveTable, key: str, used: Sequence[int]) -> list[int]:
    """The seeds a finalists stage's choice is scored on: every seed the configuration has but
    those the search and the finalists trained; all but the searched one if none is left (a
    configuration with no recorded seed beyond them, counted in `Trace.scored_on_seen`)."""
    unseen = [s for s in table.seeds_of(key) if s not in used]
    return unseen or [s for s in table.seeds_of(key) if s != used[0]]


def with_finalists(table: CurveTable, trace: Trace, reports: Sequence[Any], search_seed: int,
                   optimum: float, metric: str, mode: str, top: int, seeds: int,
                   every: int | None, max_t: int) -> Trace:
    """`trace` continued by the finalists stage (`search.running.finalists`), replayed: the
    `top` best distinct configurations by their best reported val value, each trained on the
    first `seeds` replayed curve seeds other than the searched one; the winner has the best
    mean best-val value (ties: the better-ranked); its best run's best step is exported."""
    from detr_core.config.metric_names import bare_name, is_better

    best_of: dict[str, float] = {}
    for report in reports:
        if report.value is not None and (report.grid_point not in best_of or is_better(
                report.value, best_of[report.grid_point], mode)):
            best_of[report.grid_point] = report.value
    best = max if mode == "max" else min  # first on ties, as the product's ranking
    ranked = sorted(best_of, key=best_of.get, reverse=mode == "max")[:top]
    fresh = [s for s in table.seeds if s != search_seed][:seeds]  # main() checked there are
    runs = {}  # configuration -> (best val value, its step) of each fresh run
    for key in ranked:
        runs[key] = []
        for seed in fresh:
            curve = table.curves[(key, seed)]
            index = best_val_step(curve, metric, mode, every)
            runs[key].append((curve.val[bare_name(metric)][index], curve.steps[index]))
    key = best(ranked, key=lambda k: statistics.fmean(value for value, _ in runs[k]))
    best_run = best(runs[key], key=lambda run: run[0])
    scored_on = finalist_scoring_seeds(table, key, [search_seed, *fresh])
    steps = sum(min(max_t, table.curves[(k, s)].steps[-1]) for k in ranked for s in fresh)
    return Trace(
        [*trace.compute, trace.compute[-1] + steps],
        [*trace.regret, optimum - quality(table, key, best_run[1], scored_on, metric)],
        key, list(trace.trained),
        scored_on_seen=trace.scored_on_seen + int(bool(set(scored_on) & set(fresh))))


def grid_trace(table: CurveTable, search_seed: int, optimum: float, metric: str,
               mode: str) -> Trace:
    """The grid run in its listed order on one seed; its choice is the best val value."""
    from detr_core.config.metric_names import bare_name, is_better

    trace, spent, best = Trace([], []), 0, None
    for point in table.complete_points():
        key = config_key(point)
        curve = table.curves[(key, search_seed)]
        index = best_val_step(curve, metric, mode)
        value = curve.val[bare_name(metric)][index]
        if best is None or is_better(value, best[0], mode):
            best = (value, key, curve.steps[index])
        spent += curve.steps[-1]
        trace.trained.append(key)
        trace.compute.append(spent)
        trace.regret.append(optimum - quality(table, best[1], best[2],
                                              _other_seeds(table, search_seed, best[1]), metric))
        trace.final_choice = best[1]
    return trace


#: What a scoring-seed table must share with the replayed curves (their `.meta.json`).
SAME_RECORDING = ("fixed", "checkpoint_sha256", "space_file")


def check_scoring_table(curves: Path, scoring: Path) -> dict[str, Any]:
    """The scoring-seed table's provenance, once checked against the replayed curves': it
    must exist and be recorded with the same fixed keys, checkpoint and base run."""
    if not scoring.is_file():
        raise UserInputError("no such file (record it with `python "
                             "benchmarks/learning_curves.py --grid ...`)", source=scoring)
    ours, theirs = read_meta(curves), read_meta(scoring)
    for key in SAME_RECORDING:
        if ours.get(key) != theirs.get(key):
            raise UserInputError(f"recorded with another value than {curves.name}: "
                                 f"{theirs.get(key)!r} instead of {ours.get(key)!r}",
                                 source=meta_file(scoring), key=key)
    return theirs


def load_table(curves: Path, scoring: Path | None = None) -> CurveTable:
    """The replayed curves, with the seeds of the `scoring` table (`--scoring-seeds`) added
    as scoring seeds: more seeds of some configurations that score a choice, never replayed."""
    table = CurveTable.from_jsonl(curves)
    if scoring is not None:
        table.add_scoring_runs(read_runs(scoring), scoring)
    return table


def load_settings(config_path: Path) -> Any:
    """The shipped search's settings with the benchmark's space (a SearchSpec)."""
    from detr_core.files.file_io import dump_yaml, load_yaml_mapping
    from search.space.spec import load_search_spec

    bench = load_yaml_mapping(config_path)
    shipped_path = (config_path.parent / bench["settings_from"]).resolve()
    shipped = load_yaml_mapping(shipped_path)
    shipped["space"] = bench["space"]
    experiment = shipped.setdefault("experiment", {})
    for key, value in (bench.get("experiment_overrides") or {}).items():
        if isinstance(value, dict) and isinstance(experiment.get(key), dict):
            experiment[key] = {**experiment[key], **value}  # e.g. one scheduler key
        else:
            experiment[key] = value
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / shipped_path.name
        dump_yaml(shipped, path)
        return load_search_spec(path), shipped_path


def evaluation_every(spec: Any) -> int | None:
    """How often the searched run evaluates (its `training_args.logging_steps`), None if
    unset: a replay reports only those of the recorded evaluations."""
    every = (spec.base.get("training_args") or {}).get("logging_steps")
    return int(every) if isinstance(every, int | float) and every >= 1 else None


def first_rung_searcher() -> type:
    """`AshaAwareOptunaSearch` that tells Optuna every trial's value at the first rung (which
    every trial reaches) as its COMPLETE value: TPE compares all trials at one fidelity."""
    from optuna.trial import TrialState

    from search.cluster.ray_internals import completed_trials, optuna_trials
    from search.store.layout import as_float, as_int
    from search.trial.searcher import AshaAwareOptunaSearch

    class FirstRungOptunaSearch(AshaAwareOptunaSearch):
        def __init__(self, *args: Any, rung: int, **kwargs: Any) -> None:
            self._rung = rung
            self._rung_values: dict[str, float] = {}
            super().__init__(*args, **kwargs)

        def _record(self, trial_id: str, result: dict) -> None:
            super()._record(trial_id, result)
            value = as_float(result.get(self.metric))
            if as_int(result.get("step")) == self._rung and value is not None:
                self._rung_values[trial_id] = value

        def on_trial_complete(self, trial_id: str, result: dict | None = None,
                              error: bool = False) -> None:
            if not self._is_open(trial_id):
                return
            if result:
                self._record(trial_id, result)
            value = self._rung_values.get(trial_id)
            if error or value is None:
                super().on_trial_complete(trial_id, None, error)
                return
            self.study.tell(optuna_trials(self)[trial_id], value, state=TrialState.COMPLETE)
            completed_trials(self).add(trial_id)

    return FirstRungOptunaSearch


def make_search(strategy: str, spec: Any, seed: int, storage: Path) -> tuple[Any, Any]:
    """(search_alg, scheduler) of a strategy, from the shipped settings."""
    import optuna
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from search.store.study_journal import journal_storage
    from search.trial.searcher import AshaAwareOptunaSearch

    concurrency = spec.max_concurrent or 2
    asha = ASHAScheduler(time_attr="step", max_t=spec.scheduler.max_t,
                         grace_period=spec.scheduler.grace_period,
                         reduction_factor=spec.scheduler.reduction_factor)

    def sampler() -> Any:
        return optuna.samplers.TPESampler(seed=seed,
                                          n_startup_trials=spec.searcher.n_startup_trials)

    if strategy == "asha_tpe":
        searcher = AshaAwareOptunaSearch(sampler=sampler(), study_name="replay",
                                         storage=journal_storage(storage),
                                         max_t=spec.scheduler.max_t)
        return ConcurrencyLimiter(searcher, max_concurrent=concurrency), asha
    if strategy in SAMPLER_STRATEGIES:
        from search.space.samplers import build_sampler

        name, options = SAMPLER_STRATEGIES[strategy]
        searcher = AshaAwareOptunaSearch(
            sampler=build_sampler(name, options, seed, spec.searcher.n_startup_trials),
            study_name="replay", storage=journal_storage(storage), max_t=spec.scheduler.max_t)
        return ConcurrencyLimiter(searcher, max_concurrent=concurrency), asha
    if strategy == "asha_tpe_rung":  # experiment: TPE told every trial's first-rung value
        searcher = first_rung_searcher()(sampler=sampler(), study_name="replay",
                                         storage=journal_storage(storage),
                                         max_t=spec.scheduler.max_t,
                                         rung=spec.scheduler.grace_period)
        return ConcurrencyLimiter(searcher, max_concurrent=concurrency), asha
    if strategy == "stock_optuna_asha":
        return ConcurrencyLimiter(OptunaSearch(sampler=sampler()),
                                  max_concurrent=concurrency), asha
    generator = BasicVariantGenerator(random_state=seed, max_concurrent=concurrency)
    if strategy == "random_asha":
        return generator, asha
    if strategy == "random_fifo":
        return generator, FIFOScheduler()
    raise ValueError(strategy)


def run_search(strategy: str, spec: Any, table: CurveTable, seed: int, curve_seed: int,
               num_samples: int) -> tuple[list[Any], set[str], float]:
    """One replayed search; (reports in order, completed trial ids, wall seconds)."""
    from ray import tune

    from search.space.spec import to_tune_param_space

    with tempfile.TemporaryDirectory(prefix="replay-") as folder:
        search_alg, scheduler = make_search(strategy, spec, seed, Path(folder))
        clock = simulated_clock(spec.max_concurrent or 2, num_samples)
        log = replay_log(spec.metric, clock)
        trainable = tune.with_resources(
            tune.with_parameters(replay_trial, table=table, seed=curve_seed,
                                 clock=clock, every=evaluation_every(spec)), {"cpu": 1})
        tuner = tune.Tuner(
            trainable, param_space=to_tune_param_space(spec),
            tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode,
                                        num_samples=num_samples, search_alg=search_alg,
                                        scheduler=scheduler, reuse_actors=True),
            run_config=tune.RunConfig(name="replay", storage_path=folder, verbose=0,
                                      callbacks=[log]))
        started = time.perf_counter()
        tuner.fit()
        return log.reports, log.completed, time.perf_counter() - started


@dataclass(frozen=True)
class ReplayJob:
    """What one process needs to replay its share of (strategy, searcher seed, curve seed)
    searches."""

    runs: tuple[tuple[str, int, int], ...]
    config: Path
    curves: Path
    num_samples: int
    optimum: float
    scoring: Path | None = None


def run_share(job: ReplayJob) -> list[tuple[str, int, int, Trace, float]]:
    """Replay `job.runs` in this process, on its own Ray instance: (strategy, seed, curve
    seed, trace, wall seconds) each. Replays mostly wait on Tune's event loop and the
    simulated clock's turns, so several processes side by side finish sooner without changing
    what each one sees."""
    import ray

    from search.running.driver import quiet_libraries

    spec, _ = load_settings(job.config)
    table = load_table(job.curves, job.scoring)
    quiet_libraries(verbose=0)  # no Tune experiment boxes or TensorBoard hints per replay
    # no per-trial CSV / JSON / TensorBoard files: nothing reads them, and writing them is
    # most of a replay's CPU time (the `ReplayLog` callback keeps what the benchmark needs)
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    ray.init(num_cpus=max(2, spec.max_concurrent or 2), include_dashboard=False,
             log_to_driver=False, logging_level="ERROR")
    done, grid_steps = [], grid_steps_of(table)
    searched: dict[tuple[str, int, int, int], tuple[list[Any], set[str], float]] = {}
    try:
        for strategy, seed, curve_seed in job.runs:
            name = StrategyName.parse(strategy)
            trials = name.num_samples or job.num_samples
            once = (name.base, trials, seed, curve_seed)  # a finalists variant reuses its search
            if once not in searched:
                searched[once] = run_search(name.base, spec, table, seed, curve_seed, trials)
            reports, completed, took = searched[once]
            trace = trace_from_reports(table, reports, completed, curve_seed, job.optimum,
                                       spec.metric, spec.mode,
                                       last_value_winner=name.base == "random_fifo")
            if name.top:
                trace = with_finalists(table, trace, reports, curve_seed, job.optimum,
                                       spec.metric, spec.mode, name.top, name.seeds,
                                       evaluation_every(spec), spec.scheduler.max_t)
            done.append((strategy, seed, curve_seed, trace, took))
            print(f"{strategy} seed {seed} (curves of seed {curve_seed}): {len(reports)} "
                  f"results, compute "
                  f"{trace.compute[-1] / grid_steps:.1%} of the grid, final regret "
                  f"{trace.regret[-1]:.4f} ({took:.0f} s)", flush=True)
    finally:
        ray.shutdown()
    return done


def grid_steps_of(table: CurveTable) -> int:
    return sum(max(table.curves[(config_key(p), table.seeds[0])].steps)
               for p in table.complete_points())


def run_all(runs: Sequence[tuple[str, int, int]], jobs: int, **job: Any
            ) -> list[tuple[str, int, int, Trace, float]]:
    """Every (strategy, seed) replay, in `jobs` processes (1: in this one)."""
    if jobs <= 1:
        return run_share(ReplayJob(tuple(runs), **job))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # the runs of one (searcher seed, curve seed) stay in one process: variants that add a
    # finalists stage reuse its search instead of replaying it again
    groups = sorted({run[1:] for run in runs})
    shares = [ReplayJob(tuple(r for r in runs if r[1:] in groups[i::jobs]), **job)
              for i in range(jobs)]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return [item for share in pool.map(run_share, shares) for item in share]


# ---------------------------------------------------------------------------------------------
# summaries


def first_within(trace: Trace, floor: float) -> float:
    """Compute at which the choice first got within `floor` of the optimum (inf if never)."""
    for compute, regret in zip(trace.compute, trace.regret, strict=True):
        if regret <= floor + 1e-12:
            return compute
    return math.inf


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle half (a quarter cut off each end, by count;
    at least one value kept)."""
    ordered = sorted(values)
    cut = len(ordered) // 4
    middle = ordered[cut:len(ordered) - cut] or ordered
    return statistics.fmean(middle)


def iqm_with_ci(values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES,
                seed: int = 0) -> dict[str, float]:
    """IQM and its percentile-bootstrap 95 % interval over the searches."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    draws = np.sort(data[rng.integers(0, len(data), size=(resamples, len(data)))], axis=1)
    cut = len(data) // 4
    middle = draws[:, cut:len(data) - cut] if len(data) - 2 * cut > 0 else draws
    means = middle.mean(axis=1)
    return {"iqm": iqm(values), "low": float(np.percentile(means, 2.5)),
            "high": float(np.percentile(means, 97.5))}


def regret_at(trace: Trace, budget: float, grid_steps: int) -> float | None:
    """The regret of the choice after `budget` (a fraction of the grid's compute); None when
    the search had handed nothing over by then."""
    value = None
    for compute, regret in zip(trace.compute, trace.regret, strict=True):
        if compute / grid_steps <= budget + 1e-12:
            value = regret
    return value


def regret_summary(runs: Sequence[Trace], grid_steps: int) -> dict[str, Any]:
    """IQM regret with bootstrap CI at the end and at `REGRET_BUDGETS` (a budget some search
    had not reached a choice by is left out: `handed_over` says for how many it was)."""
    summary: dict[str, Any] = {"final": iqm_with_ci([t.regret[-1] for t in runs]),
                               "iqm_compute": iqm([t.compute[-1] / grid_steps for t in runs])}
    for budget in REGRET_BUDGETS:
        values = [regret_at(t, budget, grid_steps) for t in runs]
        if any(v is None for v in values):
            summary[f"at_{budget:g}"] = {"handed_over": sum(v is not None for v in values)}
        else:
            summary[f"at_{budget:g}"] = iqm_with_ci(values)
    return summary


def compute_to_reach(runs: Sequence[Trace], target: float, grid_steps: int) -> float | None:
    """The least compute (a fraction of the grid) after which the IQM over searches of the
    regret of their choices is <= `target`, every search having chosen; None if never. Checked
    at every compute a search's choice changed, so the answer is exact for these traces."""
    for budget in sorted({c / grid_steps for t in runs for c in t.compute}):
        values = [regret_at(t, budget, grid_steps) for t in runs]
        if all(v is not None for v in values) and iqm(values) <= target + 1e-12:
            return budget
    return None


def versus_random_fifo(traces: dict[str, list[Trace]], grid_steps: int) -> dict[str, Any]:
    """Issue 34's targets against random+FIFO (HF's default), per strategy: the IQM regret
    [CI] at random+FIFO's compute (its IQM) and its ratio to random+FIFO's IQM there, whether
    the intervals are apart; the compute at which the strategy's IQM regret reaches
    random+FIFO's final IQM, and its ratio to random+FIFO's compute."""
    fifo = traces.get("random_fifo")
    if not fifo:
        return {}
    budget = iqm([t.compute[-1] / grid_steps for t in fifo])
    theirs = iqm_with_ci([regret_at(t, budget, grid_steps) for t in fifo])
    final = iqm([t.regret[-1] for t in fifo])
    out: dict[str, Any] = {"budget": budget, "random_fifo_at_budget": theirs,
                           "random_fifo_final": final, "strategies": {}}
    for name, runs in traces.items():
        if name in ("random_fifo", "grid"):
            continue
        values = [regret_at(t, budget, grid_steps) for t in runs]
        row: dict[str, Any] = {}
        if all(v is not None for v in values):
            ours = iqm_with_ci(values)
            row.update(at_budget=ours, ratio=ours["iqm"] / theirs["iqm"] if theirs["iqm"] else
                       None, intervals_apart=ours["high"] < theirs["low"])
        reach = compute_to_reach(runs, final, grid_steps)
        row.update(reach=reach, reach_ratio=reach / budget if reach is not None else None)
        out["strategies"][name] = row
    return out


def versus_text(versus: dict[str, Any]) -> list[str]:
    """The targets' table: at random+FIFO's compute, and the compute to reach its regret."""
    if not versus:
        return []
    fifo = versus["random_fifo_at_budget"]
    rows = []
    for name, row in versus["strategies"].items():
        at = row.get("at_budget")
        cell = (f"{at['iqm']:.4f} [{at['low']:.4f}, {at['high']:.4f}] | {row['ratio']:.3f}x | "
                f"{'yes' if row['intervals_apart'] else 'no'}") if at else "n/a | n/a | n/a"
        reach = row["reach"]
        rows.append(f"| ({letter(name)}) {name} | {cell} | "
                    + (f"{reach:.1%} | {row['reach_ratio']:.2f}x |" if reach is not None
                       else "not reached | n/a |"))
    return [
        "## Against random+FIFO (HF's default): issue 34's targets",
        "",
        f"At random+FIFO's compute ({versus['budget']:.1%} of the grid: 16 trials to the end) "
        f"its IQM regret is {fifo['iqm']:.4f} [{fifo['low']:.4f}, {fifo['high']:.4f}]; its final "
        f"IQM regret {versus['random_fifo_final']:.4f}. Targets: regret <= 0.5x random+FIFO's "
        "at its compute with the intervals apart; random+FIFO's final IQM regret reached with "
        "<= 0.5x its compute (exact over every compute a choice changed at).",
        "",
        "| strategy | IQM regret at random+FIFO's compute | ratio | intervals apart | compute "
        "to reach random+FIFO's final IQM regret | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]


def median_or_none(values: Sequence[float]) -> float | None:
    value = statistics.median(values)
    return None if math.isinf(value) else value


TARGET_FRACTION = 0.15  # (a) within the noise floor at <= 15 % of the grid's compute
TARGET_SPEEDUP = 2.0    # (a) needs >= 2x less compute than random_fifo (HF's default)
LETTERS = {"asha_tpe": "a", "stock_optuna_asha": "b", "random_asha": "c", "random_fifo": "d",
           "grid": "e", "asha_tpe_rung": "f", "asha_tpe_mv": "g", "asha_gp": "h",
           "asha_qmc": "i"}


def letter(name: str) -> str:
    """A strategy's letter in the report; a variant keeps its base's (`a+f3x2`)."""
    base, plus, rest = name.partition("+")
    return LETTERS.get(base, "?") + plus + rest


#: sampler strategies: our searcher with another `experiment.searcher.sampler`
SAMPLER_STRATEGIES = {"asha_tpe_mv": ("tpe", {"multivariate": True, "constant_liar": True}),
                      "asha_gp": ("gp", {}), "asha_qmc": ("qmc", {})}
#: strategies `make_search` builds (a `StrategyName`'s base)
KNOWN_BASES = (*STRATEGIES, "asha_tpe_rung", *SAMPLER_STRATEGIES)


def compute_versus(other: Sequence[float], other_spent: Sequence[float],
                   base: Sequence[float]) -> dict[str, float | None]:
    """How many times the compute of `base` another strategy needs to reach the noise floor.

    `ratio` compares the medians (fractions of the grid; inf for a seed that never got there)
    and is None when either median is inf. When only the other's median is inf, `at_least` is
    a lower bound: each of its seeds that never got there is counted at the compute it spent
    (it would have needed more), so the true median is at least that median.
    """
    base_median = statistics.median(base)
    other_median = statistics.median(other)
    if math.isinf(base_median):
        return {"ratio": None, "at_least": None}
    if not math.isinf(other_median):
        ratio = other_median / base_median
        return {"ratio": ratio, "at_least": ratio}
    bounded = [r if not math.isinf(r) else s for r, s in zip(other, other_spent, strict=True)]
    return {"ratio": None, "at_least": statistics.median(bounded) / base_median}


def summarise(traces: dict[str, list[Trace]], facts: GridFacts,
              num_samples: int | None = None) -> dict[str, Any]:
    strategies, reaches, spents = {}, {}, {}
    within_floor = {k for k, v in facts.per_point.items()
                    if v >= facts.optimum - facts.noise_floor}
    for name, runs in traces.items():
        reach = [first_within(t, facts.noise_floor) / facts.grid_steps for t in runs]
        final = [t.regret[-1] for t in runs]
        spent = [t.compute[-1] / facts.grid_steps for t in runs]
        reaches[name], spents[name] = reach, spent
        strategies[name] = {
            "median_fraction_to_noise_floor": median_or_none(reach),
            "reached": f"{sum(not math.isinf(r) for r in reach)}_of_{len(reach)}",
            "fractions_to_noise_floor": [None if math.isinf(r) else round(r, 4) for r in reach],
            "median_final_regret": statistics.median(final),
            "median_total_fraction": statistics.median(spent),
            "seeds": len(runs),
            # sampling or selection: searches that trained a configuration within the floor
            # (by its mean over every seed), and those that ended on one
            "trained_one_within_floor": sum(bool(within_floor & set(t.trained))
                                            for t in runs),
            "ended_on_one_within_floor": sum(t.final_choice in within_floor for t in runs),
            "regret": regret_summary(runs, facts.grid_steps),
        }
        if any(t.scored_on_seen for t in runs):  # finalists' choices with no unseen seed left
            strategies[name]["scored_on_seen_seeds"] = sum(t.scored_on_seen for t in runs)
    if "asha_tpe" in reaches:
        for name in strategies:
            strategies[name]["compute_vs_asha_tpe"] = compute_versus(
                reaches[name], spents[name], reaches["asha_tpe"])
        ours = traces["asha_tpe"]
        for name, runs in traces.items():
            if name not in ("asha_tpe", "grid") and len(runs) == len(ours):
                # seeds on which this strategy spent the same compute on the same choices
                strategies[name]["same_trace_as_asha_tpe"] = sum(
                    a.compute == b.compute and a.regret == b.regret
                    for a, b in zip(ours, runs, strict=True))
    ranked = sorted(facts.per_point.values(), reverse=True)
    return {"noise_floor": facts.noise_floor, "grid_optimum": facts.optimum,
            "grid_optimum_point": facts.optimum_point, "grid_steps": facts.grid_steps,
            "grid_points": len(facts.per_point), "num_samples": num_samples,
            # how many configurations count as found, and the optimum's lead over the next
            "points_within_floor": sum(v >= facts.optimum - facts.noise_floor for v in ranked),
            "runner_up_gap": ranked[0] - ranked[1] if len(ranked) > 1 else None,
            "strategies": strategies, "targets": targets(strategies)}


def targets(strategies: dict[str, Any]) -> dict[str, Any]:
    """The issue's two targets, each met (True), missed (False) or not measurable (None)."""
    ours = strategies.get("asha_tpe")
    if ours is None:
        return {}
    fraction = ours["median_fraction_to_noise_floor"]
    versus = strategies.get("random_fifo", {}).get("compute_vs_asha_tpe") or {}
    return {
        "fraction_at_most": TARGET_FRACTION,
        "fraction_met": fraction is not None and fraction <= TARGET_FRACTION,
        "speedup_vs_random_fifo_at_least": TARGET_SPEEDUP,
        "speedup_met": _speedup_met(fraction, versus),
    }


def _speedup_met(fraction: float | None, versus: dict[str, float | None]) -> bool | None:
    """Met when even the lower bound clears the target; missed when the exact ratio falls
    short or (a) never got within the floor; unknown when only a lower bound below it exists."""
    bound = versus.get("at_least")
    if bound is not None and bound >= TARGET_SPEEDUP:
        return True
    if versus.get("ratio") is not None or fraction is None:
        return False
    return None


def regret_curve(runs: Sequence[Trace], grid_steps: int, points: int = 60
                 ) -> tuple[list[float], list[float], list[float], list[float]]:
    """Median and IQR of regret over seeds on a common compute axis (fractions of the grid)."""
    horizon = max(t.compute[-1] for t in runs) / grid_steps
    xs = [horizon * (i + 1) / points for i in range(points)]
    medians, lows, highs = [], [], []
    for x in xs:
        values = []
        for t in runs:
            value = math.inf
            for compute, regret in zip(t.compute, t.regret, strict=True):
                if compute / grid_steps <= x:
                    value = regret
            values.append(value)
        finite = sorted(v if not math.isinf(v) else float("nan") for v in values)
        quantiles = statistics.quantiles([v for v in finite if v == v] or [math.nan], n=4) \
            if sum(v == v for v in finite) > 1 else [math.nan] * 3
        medians.append(statistics.median(values))
        lows.append(quantiles[0])
        highs.append(quantiles[2])
    return xs, medians, lows, highs


def plot(traces: dict[str, list[Trace]], facts: GridFacts, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for name, runs in traces.items():
        xs, med, low, high = regret_curve(runs, facts.grid_steps)
        med = [m if not math.isinf(m) else float("nan") for m in med]
        (line,) = ax.plot(xs, med, label=name, linewidth=2.5 if name == "asha_tpe" else 1.2)
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15)
    ax.axhline(facts.noise_floor, color="gray", linestyle="--", label="noise floor")
    ax.set(xlabel="compute (fraction of the grid's steps)",
           ylabel="regret: grid optimum - test mAP@.5 of the choice",
           title="Regret of the chosen config vs compute (median, IQR over searcher seeds)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def settings_text(spec: Any) -> str:
    """The search settings a replay ran with, as the report states them."""
    sched = spec.scheduler
    return (f"ASHA grace period {sched.grace_period}, reduction factor "
            f"{sched.reduction_factor:g}, max_t {sched.max_t}; Optuna TPE with "
            f"{spec.searcher.n_startup_trials} startup trials; {spec.max_concurrent} trials at a "
            "time")


def _times(versus: dict[str, float | None] | None) -> str:
    """A compute ratio as the table shows it."""
    if not versus or versus.get("at_least") is None:
        return "n/a"
    if versus.get("ratio") is not None:
        return f"{versus['ratio']:.2f}x"
    return f">= {versus['at_least']:.2f}x"


def headline(summary: dict[str, Any]) -> list[str]:
    """The issue's targets, stated as met or not from the numbers of this run."""
    strategies, goals = summary["strategies"], summary.get("targets") or {}
    ours = strategies.get("asha_tpe")
    if ours is None:
        return []
    fraction = ours["median_fraction_to_noise_floor"]
    reached = ours["reached"].replace("_", " ")
    verdict = {True: "**met**", False: "**not met**", None: "**not measurable**"}
    lines = [
        f"- (a) asha_tpe within the noise floor at <= {TARGET_FRACTION:.0%} of the grid's "
        f"compute (median over seeds): "
        + (f"{fraction:.1%}" if fraction is not None else "the median seed never got there")
        + f" ({reached} seeds got there): {verdict[goals.get('fraction_met')]}."]
    for name in ("stock_optuna_asha", "random_asha", "random_fifo"):
        if name not in strategies:
            continue
        versus = strategies[name].get("compute_vs_asha_tpe") or {}
        other = strategies[name]["median_fraction_to_noise_floor"]
        if versus.get("at_least") is None:
            text = "no ratio: (a)'s median seed never got within the noise floor"
        elif versus.get("ratio") is not None:
            text = (f"({LETTERS[name]}) needs {versus['ratio']:.2f}x (a)'s compute "
                    f"({other:.1%} of the grid)")
        else:
            text = (f"({LETTERS[name]})'s median seed never got there; counting its seeds "
                    f"that did not at the compute they spent, ({LETTERS[name]}) needs at "
                    f"least {versus['at_least']:.2f}x (a)'s compute")
        if name == "random_fifo":
            text += (f"; target >= {TARGET_SPEEDUP:g}x: "
                     f"{verdict[goals.get('speedup_met')]}")
        lines.append(f"- (a) vs ({LETTERS[name]}) {name}: {text}.")
    lines += limits(summary)
    return lines


def limits(summary: dict[str, Any]) -> list[str]:
    """By how much a missed target was missed, and the physical limit beside it."""
    ours = summary["strategies"].get("asha_tpe")
    if ours is None:
        return []
    got, of = (int(x) for x in ours["reached"].split("_of_"))
    fraction = ours["median_fraction_to_noise_floor"]
    points = summary.get("grid_points") or 0
    lines = []
    if fraction is None:
        lines.append(f"- Missed by: {of // 2 + 1 - got} more of {of} seeds would have to get "
                     f"within the noise floor for a median (got {got}); median final regret "
                     f"{ours['median_final_regret']:.4f} against a floor of "
                     f"{summary['noise_floor']:.4f}.")
    elif fraction > TARGET_FRACTION:
        lines.append(f"- Missed by: {fraction - TARGET_FRACTION:.1%} of the grid's compute "
                     f"({fraction / TARGET_FRACTION:.2f}x the target).")
    trials = summary.get("num_samples")
    if points:
        full = f"; {trials} trials at full budget {trials / points:.1%}" if trials else ""
        lines.append(f"- Physical limit: one full training is 1/{points} = {1 / points:.1%} of "
                     f"the grid's compute{full}; (a) spent {ours['median_total_fraction']:.1%} "
                     "(median).")
    stock = summary["strategies"].get("stock_optuna_asha") or {}
    if stock.get("same_trace_as_asha_tpe") is not None:
        lines.append(
            f"- Searcher limit: (b) followed (a)'s trace exactly on "
            f"{stock['same_trace_as_asha_tpe']} of {stock['seeds']} seeds. (a) tells Optuna an "
            "ASHA-stopped trial as PRUNED with its values by step, (b) as COMPLETE with its "
            "last, partial value; but TPE's good group is the best ~10% of the trials (1-2 of "
            f"{trials or 'its'}), finished trials either way, so it proposes the same "
            "configurations. A compute target against (b) needs a searcher that proposes "
            "otherwise (one that uses the rung values as a lower fidelity), not other "
            "bookkeeping.")
    within, gap = summary.get("points_within_floor"), summary.get("runner_up_gap")
    grid = summary["strategies"].get("grid")
    if within is not None and gap is not None:
        grid_rate = f"; the grid itself, every configuration trained once, picks one on " \
                    f"{grid['reached'].replace('_', ' ')} curve seeds" if grid else ""
        lines.append(f"- Noise limit: {within} of {points} configurations are within the floor "
                     f"(the optimum leads the next by {gap:.4f}, one run's spread is "
                     f"{summary['noise_floor']:.4f}){grid_rate}: a search that sees one "
                     "seed per configuration cannot tell them apart reliably at any compute.")
    if ours.get("trained_one_within_floor") is not None:
        lines.append(f"- Sampling or selection: (a) trained a configuration within the floor "
                     f"in {ours['trained_one_within_floor']} of {of} searches and ended on one "
                     f"in {ours['ended_on_one_within_floor']} (scored on the held-out seeds, "
                     f"{got} got within the floor).")
    return lines


def scoring_summary(table: CurveTable, path: Path, meta: dict[str, Any] | None
                    ) -> dict[str, Any]:
    """What the scoring seeds added: their file and commit, the configurations and seeds."""
    return {"file": _shown(path.resolve()), "commit": (meta or {}).get("commit"),
            "points": len({key for key, _ in table.scoring}),
            "seeds": sorted({seed for _, seed in table.scoring}), "runs": len(table.scoring)}


def scoring_text(summary: dict[str, Any]) -> list[str]:
    extra = summary.get("scoring_seeds")
    if not extra:
        return []
    return [f"- Scoring seeds: `{extra['file']}` (commit {str(extra['commit'])[:8]}): seeds "
            f"{extra['seeds']} of {extra['points']} configurations ({extra['runs']} runs), "
            "never replayed; a choice is scored on every seed its configuration has but the "
            "one searched, and the optimum and floor use them too."]


def render(summary: dict[str, Any], meta: dict[str, Any], settings: str, argv: Sequence[str],
           searches: str, wall: dict[str, float], curves: str = "") -> str:
    rows = []
    for name, s in summary["strategies"].items():
        frac = s["median_fraction_to_noise_floor"]
        rows.append(f"| ({letter(name)}) {name} | "
                    f"{'not reached' if frac is None else f'{frac:.1%}'} | "
                    f"{s['reached'].replace('_', ' ')} | {s['median_final_regret']:.4f} | "
                    f"{s['median_total_fraction']:.1%} | {_times(s.get('compute_vs_asha_tpe'))}"
                    f" | {wall.get(name, 0):.0f} |")
    return "\n".join([
        "# Search efficiency: replayed learning curves",
        "",
        f"Command: `python benchmarks/search_efficiency.py {' '.join(argv)}`. "
        f"Curves: `{curves or _shown(CURVES)}` (commit {meta.get('commit', '?')[:8]},"
        f" checkpoint sha256 {str(meta.get('checkpoint_sha256'))[:12]}), "
        f"{meta.get('grid')} x seeds {meta.get('seeds')}. Settings from {settings}; "
        f"{searches}.",
        "",
        f"- Grid optimum (best mean-over-seeds test mAP@.5 at best-val step): "
        f"{summary['grid_optimum']:.4f} (`{summary['grid_optimum_point']}`)",
        f"- Noise floor (median across-seed std of that number): {summary['noise_floor']:.4f}",
        f"- Grid compute: {summary['grid_steps']} optimizer steps (one run per grid point)",
        *scoring_text(summary),
        "",
        "## Headline",
        "",
        *headline(summary),
        "",
        "## All strategies",
        "",
        "Compute is in fractions of the grid's; a seed that never got within the noise floor "
        "counts as infinite compute, so a median can be \"not reached\". The grid row has one "
        "entry per curve seed.",
        "",
        "| strategy | median compute to the noise floor (of grid) | seeds that got there | "
        "median final regret | median compute spent | compute vs (a) asha_tpe | wall (s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "![regret vs compute](search_efficiency.png)",
        "",
        *regret_table(summary),
        *versus_text(summary.get("versus_random_fifo") or {}),
    ])


def _ci(cell: dict[str, Any] | None, runs: int) -> str:
    if not cell:
        return "n/a"
    if "iqm" not in cell:
        return f"{cell['handed_over']} of {runs} had chosen"
    return f"{cell['iqm']:.4f} [{cell['low']:.4f}, {cell['high']:.4f}]"


def regret_table(summary: dict[str, Any]) -> list[str]:
    """What a user gets: IQM regret (bootstrap 95 % CI) at the end and at fixed budgets."""
    budgets = " | ".join(f"at {b:.0%} of the grid" for b in REGRET_BUDGETS)
    rows = []
    for name, s in summary["strategies"].items():
        r = s.get("regret")
        if not r:
            continue
        cells = " | ".join(_ci(r.get(f"at_{b:g}"), s["seeds"]) for b in REGRET_BUDGETS)
        rows.append(f"| ({letter(name)}) {name} | {_ci(r['final'], s['seeds'])} | "
                    f"{r['iqm_compute']:.1%} | {cells} |")
    return [
        "## Regret: interquartile mean over searches, bootstrap 95 % CI",
        "",
        "Regret = grid optimum - the held-out mean test mAP@.5 of the configuration a search "
        "hands over. At a budget: the configuration it had chosen once it had spent that much "
        "compute.",
        "",
        f"| strategy | final regret | IQM compute spent | {budgets} |",
        "| --- | --- | --- | " + " | ".join("---" for _ in REGRET_BUDGETS) + " |",
        *rows,
        "",
        *[f"- {name}: {s['scored_on_seen_seeds']} of {s['seeds']} final choices had no seed "
          "left that neither the search nor the finalists trained, and are scored on the "
          "finalists' seeds too (optimistic for them)."
          for name, s in summary["strategies"].items() if s.get("scored_on_seen_seeds")],
    ]


def _shown(path: Path) -> str:
    """A path as the report names it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="few seeds and trials: a check that runs in minutes")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--curves", type=Path, default=CURVES)
    parser.add_argument("--scoring-seeds", type=Path, default=None, metavar="JSONL",
                        help="a table of further seeds for some configurations of --curves "
                             "(same fixed keys and checkpoint): they score what a search "
                             "picks and the grid's optimum, and are never replayed")
    parser.add_argument("--seeds", type=str, default=None,
                        help="searcher seeds as A-B (default: 10-29, quick: 0-2)")
    parser.add_argument("--strategies", type=str, default=",".join(STRATEGIES))
    parser.add_argument("--every-curve-seed", action="store_true",
                        help="search with each searcher seed on the curves of every recorded "
                             "seed (3x the searches; less noise when choosing defaults)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="replay in this many processes side by side (each its own Ray)")
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])

    from detr_core.files.file_io import load_yaml_mapping

    if not args.curves.is_file():
        print(f"error: {args.curves}: no recorded learning curves yet; record them first with "
              "`python benchmarks/learning_curves.py` (resumable, hours on a CPU)",
              file=sys.stderr)
        return 2
    bench = load_yaml_mapping(args.config)
    spec, shipped = load_settings(args.config)
    scoring_meta = (check_scoring_table(args.curves, args.scoring_seeds)
                    if args.scoring_seeds else None)
    table = load_table(args.curves, args.scoring_seeds)
    meta = read_meta(args.curves)
    planned = planned_runs(meta)
    if not planned or len(table.curves) < planned:
        print(f"error: {args.curves}: {len(table.curves)} of {planned or '?'} grid runs recorded "
              f"({meta_file(args.curves).name} gives the grid); finish the table with "
              "`python benchmarks/learning_curves.py` (it skips the runs already there)",
              file=sys.stderr)
        return 2
    facts = grid_facts(table, spec.metric, spec.mode)
    low, high = (int(x) for x in (args.seeds or ("0-2" if args.quick else "10-29")).split("-"))
    seeds = range(low, high + 1)
    num_samples = int(bench["quick_num_samples" if args.quick else "num_samples"])
    strategies = args.strategies.split(",")
    for strategy in strategies:
        name = StrategyName.parse(strategy)
        if name.seeds >= len(table.seeds):
            raise UserInputError(f"{strategy!r}: {name.seeds} finalist seeds, but the replayed "
                                 f"curves have {len(table.seeds) - 1} besides the searched one",
                                 key="--strategies")
    runs = [(strategy, seed, curve_seed) for strategy in strategies for seed in seeds
            for curve_seed in (table.seeds if args.every_curve_seed
                               else [table.seeds[seed % len(table.seeds)]])]
    searches = f"{num_samples} trials per search; searcher seeds {low}-{high}" + (
        f", each on the curves of every seed {table.seeds}" if args.every_curve_seed else "")
    done = run_all(runs, args.jobs, config=args.config.resolve(), curves=args.curves.resolve(),
                   num_samples=num_samples, optimum=facts.optimum,
                   scoring=args.scoring_seeds.resolve() if args.scoring_seeds else None)
    order = {run: index for index, run in enumerate(runs)}
    traces: dict[str, list[Trace]] = {strategy: [] for strategy in strategies}
    wall: dict[str, float] = {}
    for strategy, _seed, _curves, trace, took in sorted(done, key=lambda d: order[d[:3]]):
        traces[strategy].append(trace)
        wall[strategy] = wall.get(strategy, 0.0) + took
    traces["grid"] = [grid_trace(table, s, facts.optimum, spec.metric, spec.mode)
                      for s in table.seeds]
    summary = summarise(traces, facts, num_samples)
    summary["versus_random_fifo"] = versus_random_fifo(traces, facts.grid_steps)
    if args.scoring_seeds:
        summary["scoring_seeds"] = scoring_summary(table, args.scoring_seeds, scoring_meta)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_efficiency.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(traces, facts, args.out / "search_efficiency.png")
    (args.out / "search_efficiency.md").write_text(
        render(summary, meta, f"`{_shown(shipped)}`"
               + (f" with `experiment_overrides` of `{_shown(args.config.resolve())}`"
                  if bench.get("experiment_overrides") else "")
               + f" ({settings_text(spec)})", args.argv, searches, wall,
               _shown(args.curves.resolve())))
    print(json.dumps({k: v for k, v in summary.items() if k != "strategies"}), flush=True)
    for name, s in summary["strategies"].items():
        print(f"  {name}: median fraction to noise floor "
              f"{s['median_fraction_to_noise_floor']}, reached {s['reached']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
