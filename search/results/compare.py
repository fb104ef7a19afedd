"""COMPARE.md: a sequence of searches (the diary's "versions") in one table and one chart.

Each experiment is read back from its folder alone, as the export reads it. The chart is the
best value so far against cumulative compute (the optimizer steps each search's own trials
trained, in the order they ended), so a warm-started or narrowed search shows what it added for
what it cost; experiments that optimised another metric than the first stay off the curve.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from detr_core.config.metric_names import is_better
from detr_core.files.errors import UserInputError
from search.results.finalists import read_finalists, winner_seed_metrics
from search.results.reading import TrialRecord
from search.results.report import blocks, fmt, md_table
from search.results.warm_trials import experiment_trials
from search.results.winner import pick_winner
from search.space.distributions import describe_distribution, format_value
from search.space.spec import SearchSpec, read_spec_file
from search.store.layout import COMPARE_FILE, COMPARE_PLOTS_DIR, TEST_METRICS_FILE, as_float
from search.store.storage import (
    ExperimentPath,
    display_path,
    location,
    read_json,
    write_text_atomic,
)
from search.trial.status import ERRORED

TEST_SHOWN = ("map_50", "map", "recall", "precision")


@dataclass
class ComparedSearch:
    """One experiment of the sequence, read back."""

    where: ExperimentPath
    spec: SearchSpec
    trials: list[TrialRecord]   # its own and its warm-start trials
    winner: TrialRecord | None
    test_metrics: dict[str, Any] | None
    seed_metrics: dict[str, dict[str, Any]]

    @property
    def own(self) -> list[TrialRecord]:
        return [t for t in self.trials if not t.origin]

    @property
    def compute(self) -> int:
        """Optimizer steps its own trials trained (the last step each reached)."""
        return sum(t.last_step or 0 for t in self.own)

    @property
    def best_own(self) -> float | None:
        """The best value its own clean trials reached (an errored one cannot win)."""
        best = pick_winner([t for t in self.own if t.status != ERRORED], self.spec.mode)
        return best.best_value if best else None


def read_search(where: str) -> ComparedSearch:
    """One experiment folder as `ComparedSearch`; `UserInputError` when it is not one."""
    folder = location(where)
    if not folder.is_dir():
        raise UserInputError("no such experiment folder", source=where)
    spec = read_spec_file(folder)
    trials, _ = experiment_trials(folder, spec)
    metrics = read_json(folder / TEST_METRICS_FILE)
    return ComparedSearch(folder, spec, trials, pick_winner(trials, spec.mode),
                          metrics if isinstance(metrics, dict) else None,
                          winner_seed_metrics(read_finalists(folder, spec)))


def best_so_far(searches: Sequence[ComparedSearch]) -> list[tuple[int, float | None, int]]:
    """(cumulative steps, best value so far, search index) after each own trial ended, over the
    searches sharing the first one's metric and mode (an errored trial's value does not count)."""
    def ended(t: TrialRecord) -> tuple[float, str]:
        stamp = as_float((t.last_result or {}).get("timestamp"))
        return (stamp if stamp is not None else float("inf"), t.trial_id)

    first = searches[0].spec
    points: list[tuple[int, float | None, int]] = []
    spent, best = 0, None
    for index, search in enumerate(searches):
        if (search.spec.metric, search.spec.mode) != (first.metric, first.mode):
            continue
        for trial in sorted(search.own, key=ended):
            spent += trial.last_step or 0
            if trial.status != ERRORED and is_better(trial.best_value, best, first.mode):
                best = trial.best_value
            points.append((spent, best, index))
    return points


def _winner_text(search: ComparedSearch) -> str:
    winner = search.winner
    if winner is None:
        return "none"
    values = ", ".join(f"{k.rsplit('.', 1)[-1]} {fmt(winner.params.get(k))}"
                       for k in search.spec.searched_keys() if k in winner.params)
    origin = (f" (warm-start from `{display_path(location(winner.origin))}`)"
              if winner.origin else "")
    return f"`{winner.trial_id}`{origin}: {values}"


def _test_cells(search: ComparedSearch) -> list[str]:
    if not search.seed_metrics:
        return [fmt(as_float((search.test_metrics or {}).get(key)), ".3f") for key in TEST_SHOWN]
    cells = []
    for key in TEST_SHOWN:
        values = [v for v in (as_float(m.get(key)) for m in search.seed_metrics.values())
                  if v is not None]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        cells.append(f"{statistics.fmean(values):.3f} ± {std:.3f}" if values else "")
    return cells


def render_compare(searches: Sequence[ComparedSearch], plot_rel: str | None,
                   generated: datetime) -> str:
    """The Markdown of COMPARE.md (no I/O)."""
    first = searches[0].spec
    points = best_so_far(searches)
    rows, spaces, spent, best = [], [], 0, None
    for index, s in enumerate(searches, start=1):
        warm = len(s.trials) - len(s.own)
        same = (s.spec.metric, s.spec.mode) == (first.metric, first.mode)
        # where the curve stands after this search: one with no trial of its own adds nothing
        spent, best = next(((x, y) for x, y, i in reversed(points) if i == index - 1),
                           (spent, best))
        rows.append([
            str(index), f"`{display_path(s.where)}`", f"`{s.spec.metric}` ({s.spec.mode})",
            f"{len(s.own)}" + (f" + {warm} warm-start" if warm else ""), f"{s.compute:,}",
            f"{spent:,}" if same else "off the curve", fmt(s.best_own),
            fmt(best) if same else "", _winner_text(s), *_test_cells(s),
        ])
        sched = s.spec.scheduler
        space = [f"`{k}` {describe_distribution(s.spec.space[k])}"
                 for k in s.spec.searched_keys()]
        space += [f"`{k}` = {format_value(v)}" for k, v in s.spec.fixed_values().items()]
        spaces.append([str(index), f"`{s.spec.name}`", f"{sched.grace_period} / "
                       f"{fmt(sched.reduction_factor)} / {sched.max_t}",
                       "; ".join(space) or "nothing"])
    return "\n".join(blocks(
        "# Comparison of searches",
        f"Generated {generated:%Y-%m-%d %H:%M} UTC by `search/export.py --compare` over "
        f"{len(searches)} experiment(s), in the order given. Compute is the optimizer steps "
        "each search's own trials trained (warm-start trials were paid for by the search "
        "that trained them); best values are each search's own trials' best; test metrics "
        "are the winner's (mean ± std over its fresh runs when the finalists stage ran).",
        md_table(["#", "experiment", "metric", "trials", "compute (steps)",
                  "cumulative steps", "best (own trials)", "best so far", "winner",
                  *(f"test {k}" for k in TEST_SHOWN)], rows),
        "## Spaces",
        md_table(["#", "experiment", "ASHA (grace / factor / max_t)", "space"], spaces),
        f"## Best `{first.metric}` so far against compute",
        f"![best so far]({plot_rel})" if plot_rel is not None
        else "No trial reported the metric: nothing to draw."))


def compare_experiments(sources: Sequence[str], out_dir: str | ExperimentPath) -> ExperimentPath:
    """Write `COMPARE.md` and its chart into `out_dir`, every experiment read (or refused with
    a `UserInputError`) before anything is written; returns the report's path."""
    from search.results.plots import plot_best_so_far  # matplotlib: only here

    if not sources:
        raise UserInputError("give at least one experiment folder", key="--compare")
    searches = [read_search(where) for where in sources]
    out = location(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    points = best_so_far(searches)
    plot_rel = None
    if any(best is not None for _, best, _ in points):
        (out / COMPARE_PLOTS_DIR).mkdir(parents=True, exist_ok=True)
        plot = plot_best_so_far(out / COMPARE_PLOTS_DIR / "best_so_far.png", points,
                                [s.spec.name for s in searches], searches[0].spec.metric)
        plot_rel = f"{COMPARE_PLOTS_DIR}/{plot.name}"
    report = out / COMPARE_FILE
    write_text_atomic(report, render_compare(searches, plot_rel, datetime.now(timezone.utc)))
    return report
