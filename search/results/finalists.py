"""Finalists: the search's K best distinct configurations re-trained with the same S fresh
seeds to the full budget; the winner has the best mean validation value over those runs (test
numbers only report). This module plans and reads; `search.running.finalists` runs the stage.

Why: on the embedded default's grid one configuration's seed spread of test mAP@.5 is 0.029
while the best leads the next by 0.016 (`results/benchmarks/search_efficiency.md`), and the
search's own run was picked because it scored high: it is shown, never averaged in.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from search.cluster.ray_internals import trial_states
from search.results.reading import TrialRecord, find_trial_dirs, load_trial, signed
from search.results.winner import (
    build_best_config,
    rank_trials,
    trial_thread_count,
    write_config_file,
)
from search.space.spec import SearchSpec
from search.store.layout import (
    FINALISTS_DIR,
    FINALISTS_PLAN_FILE,
    TEST_METRICS_FILE,
    as_float,
    as_int,
)
from search.store.storage import ExperimentPath, read_json, write_json_atomic
from search.trial.status import COMPLETED, ERRORED

TEST_COLUMNS = (("map_50", "test mAP@.5"), ("recall", "test recall"),
                ("precision", "test precision"))

#: run-config keys that differ between runs of one configuration
PER_RUN_KEYS = ("seed", "num_threads")


@dataclass
class FinalistConfiguration:
    """One configuration of the search taken to the finalists."""

    number: int  # 1..K, in the search's order
    rank: int  # its rank among the search's trials (1 = the search's best run)
    source_trial: str
    search_value: float | None  # the search's own run: shown, never averaged
    search_step: int | None
    values: dict[str, Any]  # its searched values, for the table
    config: dict[str, Any]  # its complete run config (the search's seed)


@dataclass
class FinalistPlan:
    """Which configurations, which seeds (`finalists.json`)."""

    seeds: list[int]
    configurations: list[FinalistConfiguration]

    @property
    def runs(self) -> int:
        return len(self.seeds) * len(self.configurations)

    def grid(self) -> list[dict[str, int]]:
        """The stage's trials: `{"finalist": number, "seed": seed}`, configuration-major."""
        return [{"finalist": c.number, "seed": s} for c in self.configurations
                for s in self.seeds]

    def run_config(self, number: int, seed: int) -> dict[str, Any]:
        """The complete run config of one finalist run: its configuration, its seed."""
        return copy.deepcopy(self.configurations[number - 1].config) | {"seed": seed}


@dataclass
class FinalistRun:
    """One run of the stage, read back from its trial folder."""

    number: int
    seed: int
    trial: TrialRecord
    test_metrics: dict[str, Any] | None

    @property
    def finished(self) -> bool:
        return self.trial.status == COMPLETED

    @property
    def ended(self) -> bool:
        return self.finished or self.trial.status == ERRORED


@dataclass
class ConfigurationOutcome:
    """A configuration's fresh runs: validation values choose, test numbers only report."""

    configuration: FinalistConfiguration
    runs: list[FinalistRun] = field(default_factory=list)

    @property
    def values(self) -> list[float]:
        return [r.trial.best_value for r in self.runs
                if r.finished and r.trial.best_value is not None]

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def test_values(self, key: str) -> list[float]:
        values = (as_float((r.test_metrics or {}).get(key)) for r in self.runs if r.finished)
        return [v for v in values if v is not None]


@dataclass
class FinalistsOutcome:
    """The stage as it stands: complete when every planned run ended."""

    plan: FinalistPlan
    configurations: list[ConfigurationOutcome]
    mode: str

    @property
    def runs(self) -> list[FinalistRun]:
        return [r for c in self.configurations for r in c.runs]

    @property
    def complete(self) -> bool:
        return sum(1 for r in self.runs if r.ended) >= self.plan.runs

    def ranked(self) -> list[ConfigurationOutcome]:
        """Best mean first, those without a finished run last; ties keep the search's order."""
        return sorted(self.configurations,
                      key=lambda c: (c.mean is None, signed(c.mean, self.mode)))

    @property
    def winner(self) -> ConfigurationOutcome | None:
        """The best mean validation value, once the stage is complete."""
        best = self.ranked()[0] if self.complete and self.configurations else None
        return best if best is not None and best.mean is not None else None

    @property
    def winner_run(self) -> FinalistRun | None:
        """The winner's run with the best validation value (the first on a tie): `best_model/`
        and `best_config.yaml` come from it."""
        runs = [r for r in (self.winner.runs if self.winner is not None else ())
                if r.finished and r.trial.best_value is not None]
        return min(runs, key=lambda r: signed(r.trial.best_value, self.mode), default=None)


def plan_finalists(spec: SearchSpec, trials: Sequence[TrialRecord], top: int,
                   seeds: int) -> FinalistPlan | None:
    """The `top` best distinct clean configurations of the search and `seeds` fresh seeds (above
    every seed its trials trained with); None when no trial has a value."""
    configs = {t.trial_id: build_best_config(spec, t) for t in trials}
    chosen: list[FinalistConfiguration] = []
    seen: set[str] = set()
    for rank, trial in enumerate(rank_trials(trials, spec.mode), start=1):
        if trial.best_value is None or trial.status == ERRORED:
            continue
        config = configs[trial.trial_id]
        identity = json.dumps({k: v for k, v in config.items() if k not in PER_RUN_KEYS},
                              sort_keys=True, default=str)  # whatever seed and thread count
        if identity in seen:
            continue
        seen.add(identity)
        chosen.append(FinalistConfiguration(
            number=len(chosen) + 1, rank=rank, source_trial=trial.trial_id,
            search_value=trial.best_value, search_step=trial.best_step,
            values={k: trial.params[k] for k in spec.searched_keys() if k in trial.params},
            config=config))
        if len(chosen) == top:
            break
    if not chosen:
        return None
    used = [as_int(c.get("seed")) for c in configs.values()]
    first = max((s for s in used if s is not None), default=-1) + 1
    return FinalistPlan(seeds=list(range(first, first + seeds)), configurations=chosen)


def write_plan(experiment_dir: ExperimentPath, plan: FinalistPlan) -> ExperimentPath:
    return write_json_atomic(experiment_dir / FINALISTS_PLAN_FILE, dataclasses.asdict(plan))


def read_plan(experiment_dir: ExperimentPath) -> FinalistPlan | None:
    raw = read_json(experiment_dir / FINALISTS_PLAN_FILE)
    if not isinstance(raw, dict):
        return None
    return FinalistPlan(seeds=[int(s) for s in raw["seeds"]],
                        configurations=[FinalistConfiguration(**c) for c in raw["configurations"]])


def read_finalists(experiment_dir: ExperimentPath, spec: SearchSpec) -> FinalistsOutcome | None:
    """The stage's plan and every run it has, or None when no stage was planned."""
    plan = read_plan(experiment_dir)
    if plan is None:
        return None
    outcomes = [ConfigurationOutcome(c) for c in plan.configurations]
    folder = experiment_dir / FINALISTS_DIR
    if folder.is_dir():
        states = trial_states(folder)
        # read as any trial, with no space: a run's params are its configuration's number and
        # seed, not searched values
        runs_spec = dataclasses.replace(spec, space={}, recipe={})
        for trial_dir in find_trial_dirs(folder):
            record = load_trial(trial_dir, runs_spec, states)
            number, seed = as_int(record.params.get("finalist")), as_int(record.params.get("seed"))
            if number is not None and seed is not None and 1 <= number <= len(outcomes):
                metrics = read_json(trial_dir / TEST_METRICS_FILE)
                outcomes[number - 1].runs.append(FinalistRun(
                    number, seed, record, metrics if isinstance(metrics, dict) else None))
    for outcome in outcomes:
        outcome.runs.sort(key=lambda r: r.seed)
    return FinalistsOutcome(plan=plan, configurations=outcomes, mode=spec.mode)


def winner_seed_metrics(outcome: FinalistsOutcome | None) -> dict[str, dict[str, Any]]:
    """The winning configuration's fresh runs' test metrics, by seed ({} without a winner)."""
    winner = outcome.winner if outcome is not None else None
    return {str(r.seed): r.test_metrics for r in (winner.runs if winner else ())
            if r.finished and r.test_metrics is not None}


def write_finalist_config(experiment_dir: ExperimentPath, spec: SearchSpec,
                          outcome: FinalistsOutcome,
                          run: FinalistRun) -> tuple[dict[str, Any], ExperimentPath]:
    """`best_config.yaml` of the finalists' winner: its configuration with the seed (and thread
    count) of the run `best_model/` comes from, so it reproduces that model."""
    winner, c = outcome.winner, outcome.winner.configuration
    config = outcome.plan.run_config(run.number, run.seed)
    config["num_threads"] = trial_thread_count(spec, run.trial)
    return write_config_file(
        experiment_dir, spec, config, "run",
        f"Winner: configuration #{c.number} (trial {c.source_trial}, rank {c.rank} of the "
        f"search), chosen by its mean {spec.metric} = {winner.mean!r} over "
        f"{len(winner.values)} fresh seeds ({spec.mode}) in the finalists stage.\n"
        f"This is its run with seed {run.seed} (best {spec.metric} = {run.trial.best_value!r} "
        f"at step {run.trial.best_step}), the one best_model/ comes from.")
