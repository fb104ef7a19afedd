"""`warm_start.json`: the earlier trials a `--warm-start` search was seeded with (`search.lineage`
builds the record), written when the search starts so that the export can rank, draw and pick
them from the experiment folder alone. This module owns the file's format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from detr_core.files.errors import UserInputError
from search.results.reading import TrialRecord, load_trials
from search.space.spec import SearchSpec, read_spec_file
from search.store.layout import WARM_START_FILE
from search.store.storage import ExperimentPath, location, read_json, write_json_atomic

#: Marks a warm-start trial (trials.csv `origin`, REPORT.md); a trial trained here is `search`.
WARM_START = "warm-start"
#: Ray's bookkeeping in a reported result: not kept in the record.
_RAY_KEYS = ("config", "trial_id", "experiment_id", "date", "hostname", "node_ip", "pid",
             "experiment_tag", "training_iteration", "time_since_restore",
             "iterations_since_restore", "checkpoint_dir_name", "should_checkpoint")


def _finite(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


@dataclass
class SourceSummary:
    """One `--warm-start` source: where it is, its name, and what was taken / left out."""

    source: str
    name: str
    trials: int
    taken: int
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> how many trials
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line for what was taken, one per reason for leaving out, one per note."""
        head = (f"{self.source} ({self.name}): {self.taken} of {self.trials} trial(s) taken"
                + (f", {sum(self.left_out.values())} left out" if self.left_out else ""))
        return [head, *(f"  left out {n}: {reason}" for reason, n in self.left_out.items()),
                *(f"  note: {note}" for note in self.notes)]


@dataclass
class WarmTrial:
    """One earlier trial as the new search sees it."""

    source: str          # its experiment (local path or URI)
    trial_id: str
    trial_dir: str       # its folder in that experiment (checkpoints are copied from there)
    params: dict[str, Any]         # its values of the new search's keys
    source_params: dict[str, Any]  # the values it trained with in its own search
    status: str
    best_value: float | None
    best_step: int | None
    pruned: bool         # stopped by ASHA: told to Optuna as PRUNED with its intermediate values
    results: list[dict[str, Any]]
    #: its values as the new space samples them (recipe-relative keys as factors, where the
    #: new search resolves them per trial); None: the same as `params`
    sampled: dict[str, Any] | None = None

    def intermediate_values(self, metric: str) -> dict[int, float]:
        """Its objective by step (the first report of a step counts, as the searcher does)."""
        values: dict[int, float] = {}
        for row in self.results:
            step, value = row.get("step"), row.get(metric)
            if isinstance(step, int) and _finite(value):
                values.setdefault(step, float(value))
        return values

    def optuna_trial(self, metric: str, searched: Sequence[str]) -> dict[str, Any]:
        """What the searcher adds to its study (`AshaAwareOptunaSearch(warm_start=...)`)."""
        own = self.sampled or self.params
        return {
            "params": {k: own[k] for k in searched if k in own},
            "state": "PRUNED" if self.pruned else "COMPLETE",
            "value": None if self.pruned else self.best_value,
            "intermediate_values": self.intermediate_values(metric),
            "user_attrs": {"warm_start_source": self.source, "warm_start_trial": self.trial_id},
        }


@dataclass
class WarmStartRecord:
    """`warm_start.json`: the sources and the trials taken from them."""

    sources: list[SourceSummary]
    trials: list[WarmTrial]

    def lines(self) -> list[str]:
        return [line for s in self.sources for line in s.lines()]


def kept_result(row: Mapping[str, Any]) -> dict[str, Any]:
    """A reported result without Ray's bookkeeping: its numbers and `done`."""
    kept = {k: v for k, v in row.items() if k not in _RAY_KEYS and _finite(v)}
    if "done" in row:
        kept["done"] = bool(row["done"])
    return kept


def write_warm_start_record(experiment_dir: ExperimentPath, record: WarmStartRecord) -> None:
    """Write `warm_start.json` (atomically) into the new experiment."""
    write_json_atomic(experiment_dir / WARM_START_FILE, asdict(record))


def read_warm_start_record(experiment_dir: ExperimentPath) -> WarmStartRecord | None:
    """The record of a warm-started search, None for one that was not warm-started."""
    path = experiment_dir / WARM_START_FILE
    if not path.is_file():
        return None
    data = read_json(path)
    try:
        return WarmStartRecord(sources=[SourceSummary(**s) for s in data["sources"]],
                               trials=[WarmTrial(**t) for t in data["trials"]])
    except (TypeError, KeyError) as exc:
        raise UserInputError(f"not a warm-start record ({exc}); was it edited?",
                             source=path) from None


def experiment_trials(experiment_dir: ExperimentPath, spec: SearchSpec
                      ) -> tuple[list[TrialRecord], WarmStartRecord | None]:
    """Every trial an experiment ranks, its own and its warm-start ones (ranked, drawn and
    exported like the others), with the warm-start record (None when it was not warm-started)."""
    record = read_warm_start_record(experiment_dir)
    own = load_trials(experiment_dir, spec, allow_empty=record is not None)
    return [*own, *(TrialRecord(
        trial_id=t.trial_id, path=location(t.trial_dir), params=dict(t.params),
        results=[dict(r) for r in t.results], status=t.status, best_value=t.best_value,
        best_step=t.best_step, origin=t.source, source_params=dict(t.source_params),
    ) for t in (record.trials if record else ()))], record


def source_spec(trial: TrialRecord) -> SearchSpec | None:
    """The spec of a warm-start trial's own experiment; None when it cannot be read now."""
    if not trial.origin:
        return None
    try:
        return read_spec_file(location(trial.origin))
    except (UserInputError, OSError):
        return None
