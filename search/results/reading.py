"""Read a search back from its experiment folder: one `TrialRecord` per trial folder.

Only plain files are read (Ray's `experiment_state-*.json` as a fallback for trial ids and
statuses), so a folder can be read again at any time, with or without the driver that made it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from detr_core.files.errors import UserInputError
from search.cluster.ray_internals import trial_states
from search.space.spec import SearchSpec
from search.store.layout import INTERRUPTED_FILE, TIME_BUDGET_FILE, as_float, as_int, parse_scalar
from search.store.storage import ExperimentPath, read_json
from search.trial.status import trial_status
from search.trial.trainable import trial_values

#: Shown for every trial at its best step beside the objective (trials.csv, REPORT.md).
SHOWN_AT_BEST_STEP = ("eval_loss_bbox", "eval_map_50", "eval_recall", "eval_precision")


def shown_beside(metric: str) -> list[str]:
    """The `SHOWN_AT_BEST_STEP` metrics other than the objective `metric`."""
    return [m for m in SHOWN_AT_BEST_STEP if m != metric]


@dataclass
class TrialRecord:
    """One trial as read back. `params`: the values it trained with (`trial_values`: fixed and
    sampled ones, rounded to their q), not Optuna's raw draws. A warm-start trial was trained by
    an earlier search: `origin` is that experiment, `source_params` its values there."""

    trial_id: str
    path: ExperimentPath
    params: dict[str, Any]
    results: list[dict[str, Any]]
    status: str
    error: str | None = None
    best_value: float | None = None
    best_step: int | None = None
    origin: str | None = None
    source_params: dict[str, Any] | None = None

    @property
    def last_result(self) -> dict[str, Any] | None:
        return self.results[-1] if self.results else None

    def value_at_best_step(self, metric: str) -> float | None:
        """`metric` as reported at the trial's best step (its last report of that step)."""
        if self.best_step is None:
            return None
        at_best = [r for r in self.results if as_int(r.get("step")) == self.best_step]
        return as_float(at_best[-1].get(metric)) if at_best else None

    @property
    def last_step(self) -> int | None:
        return as_int(self.results[-1].get("step")) if self.results else None

    def cpu_seconds(self, cpus_per_trial: float) -> float | None:
        """Wall time times the torch threads it trained with, times its workers in a
        data-parallel trial (else `cpus_per_trial`): plain DETR trains ~5x slower than D-FINE
        per step on a CPU, so equal steps are not equal compute."""
        wall = self.wall_time_s
        if wall is None:
            return None
        last = self.last_result or {}
        threads = as_float(last.get("num_threads"))
        return wall * (threads * (as_float(last.get("workers")) or 1) if threads
                       else cpus_per_trial)

    @property
    def wall_time_s(self) -> float | None:
        """Last `time_total_s` (survives resumes), else the sum of `time_this_iter_s`."""
        total = as_float((self.last_result or {}).get("time_total_s"))
        if total is not None:
            return total
        times = [t for r in self.results if (t := as_float(r.get("time_this_iter_s"))) is not None]
        return sum(times) if times else None


def find_trial_dirs(experiment_dir: ExperimentPath) -> list[ExperimentPath]:
    """Sub-folders Ray Tune made for trials: those holding params.json / result.json."""
    markers = ("params.json", "result.json", "progress.csv")
    return sorted(p for p in experiment_dir.iterdir()
                  if p.is_dir() and any((p / m).is_file() for m in markers))


def read_results(trial_dir: ExperimentPath) -> list[dict[str, Any]]:
    """Every reported result in order: `result.json` lines, else `progress.csv` rows. A torn
    last line (the driver died mid-write) is skipped, not fatal."""
    results: list[dict[str, Any]] = []
    path = trial_dir / "result.json"
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                results.append(row)
    if not results and (trial_dir / "progress.csv").is_file():
        text = (trial_dir / "progress.csv").read_text(encoding="utf-8")
        rows = csv.DictReader(io.StringIO(text, newline=""))
        results = [{k: parse_scalar(v) for k, v in row.items()} for row in rows]
    return results


def signed(value: float | None, mode: str) -> float:
    """`value` as a sort key that puts the best first under `mode` (None: 0.0)."""
    return 0.0 if value is None else value if mode == "min" else -value


def best_of(
    results: Iterable[Mapping[str, Any]], metric: str, mode: str
) -> tuple[float | None, int | None]:
    """Best finite value of `metric` ever reported and its step (first one on ties)."""
    rows = [r for r in results if as_float(r.get(metric)) is not None]
    best = min(rows, key=lambda r: signed(as_float(r.get(metric)), mode), default=None)
    return (None, None) if best is None else (as_float(best[metric]), as_int(best.get("step")))


_TRIAL_ID_IN_DIRNAME = re.compile(r"(?:^|_)([0-9a-f]{5}_\d{5}|[0-9a-f]{8})(?=_|$)")


def load_trial(
    trial_dir: ExperimentPath, spec: SearchSpec, ray_states: Mapping[str, tuple[str, str]],
    budget_cut: Collection[str] = (), interrupted: Collection[str] = (),
) -> TrialRecord:
    """Read one trial folder and decide its status and best metric."""
    results = read_results(trial_dir)
    ray_id, ray_status = ray_states.get(trial_dir.name, ("", ""))
    error = None  # the exception message: the last non-empty line of error.txt
    if (trial_dir / "error.txt").is_file():
        text = (trial_dir / "error.txt").read_text(errors="replace")
        error = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()),
                     "error (empty error.txt)")
    elif (trial_dir / "error.pkl").is_file():
        error = "error (see error.pkl)"
    elif ray_status == "ERROR":
        error = "error (Ray marked the trial ERROR)"
    trial_id = next((str(r["trial_id"]) for r in results if r.get("trial_id")), "") or ray_id
    if not trial_id:
        match = _TRIAL_ID_IN_DIRNAME.search(trial_dir.name)
        trial_id = match.group(1) if match else trial_dir.name
    done = bool(results and results[-1].get("done")) or ray_status == "TERMINATED"
    # error.txt stays after a failure a retry (max_failures) got past: a trial that ended or was
    # still running (or waiting to) is not errored; its error column tells what happened
    recovered = ray_status != "ERROR" and (
        done or ray_status in ("TERMINATED", "RUNNING", "PENDING", "PAUSED"))
    status = trial_status(
        results[-1] if results else None, errored=error is not None and not recovered,
        max_t=spec.scheduler.max_t, ended=done, cut_by_budget=trial_id in budget_cut,
        interrupted=trial_id in interrupted,
    )
    best_value, best_step = best_of(results, spec.metric, spec.mode)
    return TrialRecord(
        trial_id=trial_id, path=trial_dir,
        params=trial_values(spec.space, json_dict(trial_dir / "params.json"), spec.base,
                            spec.recipe),
        results=results, status=status, error=error, best_value=best_value, best_step=best_step,
    )


def load_trials(experiment_dir: ExperimentPath, spec: SearchSpec,
                allow_empty: bool = False) -> list[TrialRecord]:
    """All trials of the experiment, sorted by trial id (the order Tune created them). No trial
    folder is a `UserInputError` unless `allow_empty` (a warm-started search has some already)."""
    ray_states = trial_states(experiment_dir)
    budget = json_dict(experiment_dir / TIME_BUDGET_FILE).get("cut_trials")
    cut = {str(t) for t in budget} if isinstance(budget, list) else set()
    interrupted = set((read_interrupt_record(experiment_dir) or {}).get("running_trials", ()))
    trials = [load_trial(d, spec, ray_states, cut, interrupted)
              for d in find_trial_dirs(experiment_dir)]
    if not trials and not allow_empty:
        raise UserInputError("no trials found (no trial folder with params.json/result.json); "
                             "did the search start?", source=experiment_dir)
    return sorted(trials, key=lambda t: t.trial_id)


def json_dict(path: ExperimentPath) -> dict[str, Any]:
    """A JSON file's object; {} when it is missing, unreadable or not an object."""
    data = read_json(path)
    return data if isinstance(data, dict) else {}


def read_interrupt_record(experiment_dir: ExperimentPath) -> dict[str, Any] | None:
    """What `search.running.interrupt` wrote when Ctrl-C / SIGTERM stopped the search, or None."""
    data = json_dict(experiment_dir / INTERRUPTED_FILE)
    return data if isinstance(data.get("running_trials"), dict) else None
