"""The charts, as PNG files, for REPORT.md and COMPARE.md. The only module that imports
matplotlib (headless `Agg` backend)."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from search.results.importance import Importances
from search.results.reading import TrialRecord
from search.results.report import label
from search.space.distributions import is_distribution, log_scale_keys_of
from search.space.spec import SearchSpec
from search.store.layout import as_float, as_int
from search.store.storage import ExperimentPath, write_bytes_atomic
from search.trial.status import status_category


def _save(fig: Any, path: ExperimentPath) -> ExperimentPath:
    """The chart rendered in memory, written atomically (one rename, or one upload)."""
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return write_bytes_atomic(path, png.getvalue())


def plot_curves(
    path: ExperimentPath, trials: Sequence[TrialRecord], key: str, title: str, winner: str | None
) -> ExperimentPath:
    """`key` vs step for every trial on one chart; the winner drawn thicker."""
    fig, ax = plt.subplots(figsize=(9, 5))
    drawn = 0
    for t in trials:
        points = [(s, v) for r in t.results if (s := as_int(r.get("step"))) is not None
                  and (v := as_float(r.get(key))) is not None]
        if not points:
            continue
        is_winner = t.trial_id == winner
        ax.plot(*zip(*points, strict=True), marker=".", linewidth=2.5 if is_winner else 1.0,
                zorder=3 if is_winner else 2,
                label=f"{t.trial_id} (winner)" if is_winner else t.trial_id)
        drawn += 1
    ax.set(xlabel="step", ylabel=key, title=title)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize="small", ncol=max(1, math.ceil(drawn / 20)),
                  loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, f"no trial reported {key}", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def param_axis(spec: SearchSpec, key: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """("categorical", options: a `choice`'s in space order, or any non-numeric values), else
    ("log", []) for the space's log-scale distributions, else ("linear", [])."""
    entry = spec.space.get(key)
    choices = list(entry["choice"]) if is_distribution(entry) and "choice" in entry else None
    if choices is not None or not all(as_float(v) is not None for v in values):
        options = choices or []
        return "categorical", options + [v for v in values if v not in options]
    return ("log" if key in log_scale_keys_of(spec.space) else "linear"), []


_POINT_STYLES = {  # status category -> (label, scatter style)
    "completed": ("completed", {"marker": "o", "color": "tab:blue"}),
    "stopped by ASHA": ("stopped early (partial budget)",
                        {"marker": "o", "facecolors": "none", "edgecolors": "tab:blue"}),
    "cut by time budget": ("cut by time budget", {"marker": "D", "facecolors": "none",
                                                  "edgecolors": "tab:orange"}),
    "interrupted": ("interrupted", {"marker": "s", "facecolors": "none",
                                    "edgecolors": "tab:gray"}),
    "errored": ("errored", {"marker": "x", "color": "tab:gray"}),
}


def plot_param(
    path: ExperimentPath, spec: SearchSpec, trials: Sequence[TrialRecord], key: str,
    winner: str | None,
) -> ExperimentPath:
    """Sampled value of `key` vs the best metric each trial reached, the marker by how it ended
    (partial budgets do not compare on equal terms); the winner as a star."""
    points = [t for t in trials if key in t.params and t.best_value is not None]
    kind, options = param_axis(spec, key, [t.params[key] for t in points])
    fig, ax = plt.subplots(figsize=(6, 4))
    labelled: set[str] = set()
    for t in points:
        x = options.index(t.params[key]) if kind == "categorical" else float(t.params[key])
        if t.trial_id == winner:
            ax.scatter([x], [t.best_value], marker="*", s=200, color="tab:red", zorder=3,
                       label="winner")
            continue
        name, style = _POINT_STYLES.get(status_category(t.status), _POINT_STYLES["completed"])
        ax.scatter([x], [t.best_value], s=40, zorder=2,
                   label=None if name in labelled else name, **style)
        labelled.add(name)
    if kind == "categorical":
        ax.set_xticks(range(len(options)), [label(o) for o in options])
        ax.set_xlim(-0.5, len(options) - 0.5)
    elif kind == "log":
        ax.set_xscale("log")
    if points:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no trial with a value", ha="center", transform=ax.transAxes)
    ax.set(xlabel=key, ylabel=f"best {spec.metric}", title=f"{key} ({spec.mode} is better)")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def write_plots(
    plots_dir: ExperimentPath, spec: SearchSpec, trials: Sequence[TrialRecord],
    keys: Sequence[str], winner: str | None,
) -> list[ExperimentPath]:
    """The curve and per-parameter charts of the report; returns their paths in report order."""
    plots_dir.mkdir(exist_ok=True)
    return [
        plot_curves(plots_dir / "metric_curves.png", trials, spec.metric,
                    f"{spec.metric} per trial ({spec.mode} is better)", winner),
        plot_curves(plots_dir / "train_loss_curves.png", trials, "train_loss",
                    "train_loss per trial", winner),
        *(plot_param(plots_dir / f"param_{re.sub(r'[^A-Za-z0-9._-]', '_', key)}.png", spec,
                     trials, key, winner) for key in keys),
    ]


def write_importances_plot(plots_dir: ExperimentPath,
                           importances: Importances) -> ExperimentPath | None:
    """`plots/importances.png`, most important on top; without importances any old one goes."""
    path = plots_dir / "importances.png"
    if not importances.values:
        path.unlink(missing_ok=True)
        return None
    plots_dir.mkdir(exist_ok=True)
    names = list(importances.values)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.6 * max(len(names), 1) + 1.5))
    ax.barh(names, [importances.values[n] for n in names], color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set(xlabel="importance (fANOVA, sums to 1)",
           title=f"What mattered for {importances.metric} at step {importances.rung_step} "
                 f"(N = {importances.n_trials} trials)")
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def plot_best_so_far(path: ExperimentPath, points: Sequence[tuple[int, float | None, int]],
                     names: Sequence[str], metric: str) -> ExperimentPath:
    """Best `metric` so far (a step line) against cumulative optimizer steps, one colour per
    search of the sequence, a dashed line where each search starts."""
    fig, ax = plt.subplots(figsize=(9, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    start = 0
    for index, name in enumerate(names):
        mine = [(x, y) for x, y, i in points if i == index and y is not None]
        if not mine:
            continue
        ax.axvline(start, color="grey", linestyle="--", linewidth=0.8)
        xs, ys = zip(*mine, strict=True)
        ax.step(xs, ys, where="post", marker="o", color=colours[index % len(colours)],
                label=f"{index + 1}. {name}")
        start = xs[-1]
    ax.set(xlabel="cumulative optimizer steps (trials trained by the searches)",
           ylabel=f"best {metric} so far", title="Searches in sequence")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return _save(fig, path)
