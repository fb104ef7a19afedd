"""`ExportSummary`: what one export of an experiment folder found and wrote.

The export fills it in; the report renders it; the driver and `search/export.py` print its
`describe()` lines at the end (where the report, best config, model and TensorBoard logs are).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from search.results.finalists import FinalistsOutcome
from search.results.formatting import fmt
from search.results.importance import Importances
from search.results.reading import TrialRecord
from search.results.warm_trials import WarmStartRecord
from search.store.files import display_path
from search.store.storage import ExperimentPath
from search.trial.status import CATEGORIES, status_category


def status_counts(trials: Sequence[TrialRecord]) -> dict[str, int]:
    """How many trials ended in each status category, in report order."""
    counts = Counter(status_category(t.status) for t in trials)
    return {c: counts[c] for c in CATEGORIES if counts[c]}


def counts_text(counts: Mapping[str, int]) -> str:
    """`5 completed, 3 stopped by ASHA`."""
    return ", ".join(f"{n} {c}" for c, n in counts.items()) or "none"


@dataclass
class ExportSummary:
    """What `export_experiment` wrote, for the driver and the CLI to print or build on."""

    experiment_dir: ExperimentPath
    name: str
    metric: str
    mode: str
    trials: list[TrialRecord]
    status_counts: dict[str, int]
    winner: TrialRecord | None
    trials_csv: ExperimentPath
    report_path: ExperimentPath
    plots: list[ExperimentPath]
    importances: Importances | None = None
    importances_plot: ExperimentPath | None = None
    best_config: dict[str, Any] | None = None
    best_config_path: ExperimentPath | None = None
    best_model_dir: ExperimentPath | None = None
    model_step: int | None = None
    model_source: str | None = None
    test_metrics: dict[str, Any] | None = None
    test_error: str | None = None
    finalists: FinalistsOutcome | None = None  # finalists.json and the stage's runs
    interruption: dict[str, Any] | None = None  # interrupted.json: signal, trials, resume
    warm_start: WarmStartRecord | None = None  # warm_start.json: earlier trials seeded with

    @property
    def winner_trial_id(self) -> str | None:
        return self.winner.trial_id if self.winner else None

    def describe(self) -> str:
        """A few lines for the terminal: counts, winner, where the outputs are."""
        warm = sum(1 for t in self.trials if t.origin)
        taken = f", {warm} of them warm-start trials of earlier searches" if warm else ""
        lines = [f"{self.name}: {len(self.trials)} trials ({counts_text(self.status_counts)}"
                 f"{taken})"]
        if self.winner is None:
            lines.append(f"no trial reported {self.metric}: no best_config.yaml written")
        else:
            origin = (f" (warm-start trial of {self.winner.origin})" if self.winner.origin
                      else "")
            lines.append(
                f"winner {self.winner.trial_id}{origin}: best {self.metric} = "
                f"{fmt(self.winner.best_value)} at step {self.winner.best_step}"
            )
        chosen = self.finalists.winner if self.finalists is not None else None
        if chosen is not None:
            lines.append(f"finalists:   configuration #{chosen.configuration.number} (trial "
                         f"{chosen.configuration.source_trial}) won: mean {self.metric} "
                         f"{fmt(chosen.mean)} over {len(chosen.values)} fresh seeds, of "
                         f"{len(self.finalists.configurations)} configuration(s)")
        elif self.finalists is not None:
            ended = sum(1 for r in self.finalists.runs if r.ended)
            lines.append(f"finalists:   not finished ({ended} of {self.finalists.plan.runs} "
                         "runs ended): the winner is the search's best run for now")
        if self.test_metrics is not None:
            lines.append("test split:  " + ", ".join(
                f"{k} {fmt(self.test_metrics.get(k), missing='n/a')}"
                for k in ("map_50", "recall", "iou_mean")))
        if self.test_error:
            lines.append(f"warning: test evaluation failed: {self.test_error}")
        if self.importances is not None and self.importances.values:
            top, share = next(iter(self.importances.values.items()))
            lines.append(f"mattered:    {top} (importance {share:.2f} at step "
                         f"{self.importances.rung_step}, N = {self.importances.n_trials})")
        lines.append(f"report:      {self.report_path}")
        if self.best_config_path is not None:
            lines.append(f"best config: {self.best_config_path}")
        if self.best_model_dir is not None:
            lines.append(f"best model:  {self.best_model_dir} (step {self.model_step})")
        lines.append(f"tensorboard: tensorboard --logdir {display_path(self.experiment_dir)}")
        return "\n".join(lines)
