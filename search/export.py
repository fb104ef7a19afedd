"""Rebuild everything a search leaves behind from its Ray Tune experiment folder alone.

    python search/export.py results/<name>            # re-export (also after a crash / resume)
    python search/export.py results/<name> --no-evaluate

Only plain files are read, so any experiment folder can be exported again at any time, with or
without the driver that made it: `search_spec.yaml` (written by the driver at start) and, per
trial folder, `params.json`, `result.json` (`progress.csv` as fallback), `error.txt` /
`error.pkl` and `checkpoint_*/checkpoint_meta.json`. Ray's `experiment_state-*.json` is read
only as a fallback for trial ids and statuses.

Written into the experiment folder:

- `best_config.yaml`  complete detr_core run config of the winner (base + its sampled values);
- `best_model/`       the winner's `save_pretrained` folder from its best step (not its last);
- `trials.csv`        one row per trial: status, sampled values, best metric and step, time;
- `plots/*.png`       metric and train-loss curves of every trial, one chart per hyperparameter;
- `test_metrics.json` the winner's test-split metrics (when the run config has a test split);
- `REPORT.md`         the search diary: trials table, plots, winner, test metrics, seeds.

The winner is the trial with the best value of the metric ever reported (Tune's `scope="all"`),
so a trial that ASHA stopped early competes with the score it actually reached.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python search/export.py`: make `search` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from detr_core.config import apply_overrides
from detr_core.errors import UserInputError, exit_on_user_error
from detr_core.metric_names import TEST_TABLE_METRICS
from detr_core.yaml_io import dump_yaml, load_yaml_mapping
from search.space import is_distribution, log_scale_keys_of, searched_keys_of
from search.trial_status import (
    CATEGORIES,
    ERRORED,
    status_category,
    trial_status,
)

SPEC_FILE = "search_spec.yaml"
CHECKPOINT_META_FILE = "checkpoint_meta.json"
MODEL_SOURCE_FILE = "export_source.json"
TEST_METRICS_FILE = "test_metrics.json"
SEEDS_DIR = "final_seeds"
TEST_METRIC_KEYS = TEST_TABLE_METRICS


# ---------------------------------------------------------------------------------------------
# What the folder holds
# ---------------------------------------------------------------------------------------------


@dataclass
class SearchSpec:
    """The parts of `search_spec.yaml` the export needs."""

    name: str
    metric: str
    mode: str
    max_t: int | None
    experiment: dict[str, Any]
    base: dict[str, Any]
    space: dict[str, Any]

    def sampled_keys(self) -> list[str]:
        """Dotted keys that are searched (a distribution), in the spec's order."""
        return searched_keys_of(self.space)

    def fixed_values(self) -> dict[str, Any]:
        """Dotted keys the space pins to one value."""
        return {k: v for k, v in self.space.items() if not is_distribution(v)}


@dataclass
class TrialRecord:
    """One trial as read back from its folder."""

    trial_id: str
    path: Path
    params: dict[str, Any]
    results: list[dict[str, Any]]
    status: str
    error: str | None = None
    best_value: float | None = None
    best_step: int | None = None

    @property
    def last_result(self) -> dict[str, Any] | None:
        return self.results[-1] if self.results else None

    @property
    def last_step(self) -> int | None:
        last = self.last_result
        return _as_int(last.get("step")) if last else None

    @property
    def wall_time_s(self) -> float | None:
        """Last `time_total_s` (survives resumes), else the sum of `time_this_iter_s`."""
        last = self.last_result
        if last and _as_float(last.get("time_total_s")) is not None:
            return _as_float(last["time_total_s"])
        times = [_as_float(r.get("time_this_iter_s")) for r in self.results]
        times = [t for t in times if t is not None]
        return sum(times) if times else None


@dataclass
class ExportSummary:
    """What `export_experiment` wrote, for the driver and the CLI to print or build on."""

    experiment_dir: Path
    name: str
    metric: str
    mode: str
    trials: list[TrialRecord]
    status_counts: dict[str, int]
    winner: TrialRecord | None
    trials_csv: Path
    report_path: Path
    plots: list[Path]
    best_config: dict[str, Any] | None = None
    best_config_path: Path | None = None
    best_model_dir: Path | None = None
    model_step: int | None = None
    model_source: str | None = None
    test_metrics: dict[str, Any] | None = None
    test_error: str | None = None
    seed_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def winner_trial_id(self) -> str | None:
        return self.winner.trial_id if self.winner else None

    def describe(self) -> str:
        """A few lines for the terminal: counts, winner, where the outputs are."""
        lines = [f"{self.name}: {len(self.trials)} trials ({_counts_text(self.status_counts)})"]
        if self.winner is None:
            lines.append(f"no trial reported {self.metric}: no best_config.yaml written")
        else:
            lines.append(
                f"winner {self.winner.trial_id}: best {self.metric} = "
                f"{_fmt(self.winner.best_value)} at step {self.winner.best_step}"
            )
            lines.append(f"best config: {self.best_config_path}")
            if self.best_model_dir is not None:
                lines.append(f"best model:  {self.best_model_dir} (step {self.model_step})")
        if self.test_error:
            lines.append(f"warning: test evaluation failed: {self.test_error}")
        lines.append(f"report:      {self.report_path}")
        return "\n".join(lines)


def load_spec(experiment_dir: Path) -> SearchSpec:
    """Read `search_spec.yaml`; a missing or malformed spec is the user's error (exit 2)."""
    path = experiment_dir / SPEC_FILE
    if not path.is_file():
        raise UserInputError(
            f"{experiment_dir}: not a search experiment folder (no {SPEC_FILE}; "
            "give the folder `search/run.py` wrote, e.g. results/<name>)"
        )
    raw = load_yaml_mapping(path)
    experiment = raw.get("experiment") or {}
    if not isinstance(experiment, dict) or not isinstance(experiment.get("metric"), str):
        raise UserInputError(f"{path}: experiment.metric: missing (a metric name is required)")
    mode = experiment.get("mode", "min")
    if mode not in ("min", "max"):
        raise UserInputError(f"{path}: experiment.mode: expected 'min' or 'max', got {mode!r}")
    base, space = raw.get("base") or {}, raw.get("space") or {}
    if not isinstance(base, dict) or not isinstance(space, dict):
        raise UserInputError(f"{path}: `base` and `space` must be mappings")
    max_t = experiment.get("max_t")
    return SearchSpec(
        name=str(raw.get("name") or experiment_dir.name),
        metric=experiment["metric"],
        mode=mode,
        max_t=int(max_t) if max_t is not None else None,
        experiment=experiment,
        base=base,
        space=space,
    )


def find_trial_dirs(experiment_dir: Path) -> list[Path]:
    """Sub-folders Ray Tune made for trials: those holding params.json / result.json."""
    markers = ("params.json", "result.json", "progress.csv")
    return sorted(
        p for p in experiment_dir.iterdir()
        if p.is_dir() and any((p / m).is_file() for m in markers)
    )


def read_results(trial_dir: Path) -> list[dict[str, Any]]:
    """Every reported result in order: `result.json` lines, else `progress.csv` rows.

    A torn last line (the driver died mid-write) is skipped, not fatal.
    """
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
        with open(trial_dir / "progress.csv", newline="", encoding="utf-8") as f:
            results = [{k: _parse_scalar(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return results


def read_params(trial_dir: Path) -> dict[str, Any]:
    """The trial's sampled config (flat dotted keys) from `params.json`; {} if unreadable."""
    try:
        params = json.loads((trial_dir / "params.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return params if isinstance(params, dict) else {}


def read_error(trial_dir: Path) -> str | None:
    """Last non-empty line of `error.txt` (the exception message); None if the trial is clean."""
    path = trial_dir / "error.txt"
    if path.is_file():
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1] if lines else "error (empty error.txt)"
    if (trial_dir / "error.pkl").is_file():
        return "error (see error.pkl)"
    return None


def read_ray_states(experiment_dir: Path) -> dict[str, tuple[str, str]]:
    """Fallback from the newest `experiment_state-*.json`: trial folder name -> (id, status).

    Only plain JSON fields are read (`trial_id`, `status`, `relative_logdir`); any surprise in
    Ray's internal format just means no fallback.
    """
    files = sorted(experiment_dir.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        return {}
    try:
        state = json.loads(files[-1].read_text(encoding="utf-8"))
        states = {}
        for entry in state.get("trial_data", []):
            trial = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
            if trial.get("relative_logdir"):
                states[str(trial["relative_logdir"])] = (
                    str(trial.get("trial_id", "")),
                    str(trial.get("status", "")),
                )
        return states
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return {}


def best_of(
    results: Iterable[Mapping[str, Any]], metric: str, mode: str
) -> tuple[float | None, int | None]:
    """Best finite value of `metric` ever reported and its step (first one on ties)."""
    best: tuple[float, int | None] | None = None
    for row in results:
        value = _as_float(row.get(metric))
        if value is None:
            continue
        if best is None or (value < best[0] if mode == "min" else value > best[0]):
            best = (value, _as_int(row.get("step")))
    return best if best is not None else (None, None)


_TRIAL_ID_IN_DIRNAME = re.compile(r"(?:^|_)([0-9a-f]{5}_\d{5}|[0-9a-f]{8})(?=_|$)")


def load_trial(
    trial_dir: Path, spec: SearchSpec, ray_states: Mapping[str, tuple[str, str]]
) -> TrialRecord:
    """Read one trial folder and decide its status and best metric."""
    results = read_results(trial_dir)
    error = read_error(trial_dir)
    ray_id, ray_status = ray_states.get(trial_dir.name, ("", ""))
    if error is None and ray_status == "ERROR":
        error = "error (Ray marked the trial ERROR)"
    trial_id = next((str(r["trial_id"]) for r in results if r.get("trial_id")), "") or ray_id
    if not trial_id:
        match = _TRIAL_ID_IN_DIRNAME.search(trial_dir.name)
        trial_id = match.group(1) if match else trial_dir.name
    done = bool(results and results[-1].get("done")) or ray_status == "TERMINATED"
    status = trial_status(
        results[-1] if results else None, errored=error is not None, max_t=spec.max_t, ended=done
    )
    best_value, best_step = best_of(results, spec.metric, spec.mode)
    return TrialRecord(
        trial_id=trial_id,
        path=trial_dir,
        params=read_params(trial_dir),
        results=results,
        status=status,
        error=error,
        best_value=best_value,
        best_step=best_step,
    )


def load_trials(experiment_dir: Path, spec: SearchSpec) -> list[TrialRecord]:
    """All trials of the experiment, sorted by trial id (the order Tune created them)."""
    ray_states = read_ray_states(experiment_dir)
    trials = [load_trial(d, spec, ray_states) for d in find_trial_dirs(experiment_dir)]
    if not trials:
        raise UserInputError(
            f"{experiment_dir}: no trials found (no trial folder with params.json/result.json); "
            "did the search start?"
        )
    return sorted(trials, key=lambda t: t.trial_id)


def rank_trials(trials: Sequence[TrialRecord], mode: str) -> list[TrialRecord]:
    """Trials best first by their best metric; errored trials after clean ones, no value last.

    Errored trials rank behind the others because a config that crashed may crash again when
    retrained: rank 1 is always the winner (see `pick_winner`).
    """

    def key(t: TrialRecord) -> tuple[bool, bool, float, str]:
        if t.best_value is None:
            return (True, False, 0.0, t.trial_id)
        signed = t.best_value if mode == "min" else -t.best_value
        return (False, t.status == ERRORED, signed, t.trial_id)

    return sorted(trials, key=key)


def pick_winner(trials: Sequence[TrialRecord], mode: str) -> TrialRecord | None:
    """The trial with the best metric ever reported; an errored one only if no other has one."""
    ranked = rank_trials(trials, mode)
    return ranked[0] if ranked and ranked[0].best_value is not None else None


# ---------------------------------------------------------------------------------------------
# best_config.yaml and best_model/
# ---------------------------------------------------------------------------------------------


def build_best_config(spec: SearchSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """Base run config with the space's fixed values and the trial's sampled values set.

    Keys are dotted paths into the nested run config (`training_args.learning_rate`), the same
    merge the trainable applies, so the result reproduces the trial on its own.
    """
    return apply_overrides(apply_overrides(spec.base, spec.fixed_values()), dict(params))


def write_best_config(
    experiment_dir: Path, spec: SearchSpec, winner: TrialRecord
) -> tuple[dict[str, Any], Path]:
    """Write `best_config.yaml` (atomically) with a header naming the trial and its best step."""
    config = build_best_config(spec, winner.params)
    path = experiment_dir / "best_config.yaml"
    header = (
        f"Best run config of search `{spec.name}`, written by search/export.py.\n"
        f"Winner: trial {winner.trial_id}, best {spec.metric} = {winner.best_value!r} "
        f"({spec.mode}) at step {winner.best_step}.\n"
        f"Reproduce: python -m detr_core.train --config {_display_path(path)}"
    )
    tmp = path.with_name(f".{path.name}.tmp")
    dump_yaml(config, tmp, header=header)
    os.replace(tmp, path)
    return config, path


def read_checkpoints(trial_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """`(checkpoint dir, checkpoint_meta.json)` for every checkpoint of a trial, oldest first."""
    found = []
    for ckpt in sorted(trial_dir.glob("checkpoint_*")):
        try:
            meta = json.loads((ckpt / CHECKPOINT_META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            found.append((ckpt, meta))
    return found


def select_checkpoint(
    trial: TrialRecord, mode: str
) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint of the trial's best step; else the one whose meta value is best.

    The fallback covers a `CheckpointConfig(num_to_keep=...)` that deleted the best-step
    checkpoint. The newest checkpoint wins a tie (a resumed trial may report a step twice).
    """
    checkpoints = read_checkpoints(trial.path)
    at_best = [c for c in checkpoints if _as_int(c[1].get("step")) == trial.best_step]
    if trial.best_step is not None and at_best:
        return at_best[-1]
    scored = [c for c in checkpoints if _as_float(c[1].get("value")) is not None]
    if not scored:
        return None
    sign = 1.0 if mode == "min" else -1.0
    return min(reversed(scored), key=lambda c: sign * _as_float(c[1]["value"]))


def model_folder(checkpoint_dir: Path, meta: Mapping[str, Any]) -> Path:
    """The `save_pretrained` folder inside a checkpoint, as its meta names it."""
    return checkpoint_dir / str(meta.get("model_dir") or ".")


def copy_best_model(experiment_dir: Path, source: Path, provenance: dict[str, Any]) -> Path:
    """Copy `source` to `best_model/`, replacing an older copy in (nearly) one step.

    The copy goes to a temp folder first and is renamed into place, so a crash never leaves a
    half-copied `best_model/`. An existing copy of the very same checkpoint is kept as it is:
    its timestamp is what tells `test_metrics.json` whether it is still current.
    """
    dest = experiment_dir / "best_model"
    if _read_json(dest / MODEL_SOURCE_FILE) == provenance:
        return dest
    if not (source / "config.json").is_file():
        print(f"warning: {source} has no config.json; copying it anyway", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix=".best_model.", dir=experiment_dir))
    shutil.copytree(source, tmp, dirs_exist_ok=True)
    (tmp / MODEL_SOURCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=".best_model.old.", dir=experiment_dir))
        os.replace(dest, old / "best_model")
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest


def export_best_model(
    experiment_dir: Path, spec: SearchSpec, winner: TrialRecord
) -> tuple[Path | None, int | None, str | None]:
    """Find the winner's best-step checkpoint and copy its model; (dir, step, source) or Nones.

    A stale `best_model/` of another trial is removed when the winner has no checkpoint, so
    the folder never disagrees with `best_config.yaml`.
    """
    chosen = select_checkpoint(winner, spec.mode)
    if chosen is None:
        stale = experiment_dir / "best_model"
        if (stale / MODEL_SOURCE_FILE).is_file():
            shutil.rmtree(stale)
        print(f"warning: trial {winner.trial_id} has no checkpoint with {CHECKPOINT_META_FILE}; "
              "no best_model/ written", file=sys.stderr)
        return None, None, None
    ckpt_dir, meta = chosen
    source = model_folder(ckpt_dir, meta)
    if not source.is_dir():
        print(f"warning: {ckpt_dir / CHECKPOINT_META_FILE} names model_dir {source}, which is "
              "not a folder; no best_model/ written", file=sys.stderr)
        return None, None, None
    relative = Path(os.path.relpath(source, winner.path.parent)).as_posix()
    provenance = {
        "trial_id": winner.trial_id,
        "checkpoint": relative,
        "step": _as_int(meta.get("step")),
        "metric": meta.get("metric"),
        "value": _as_float(meta.get("value")),
    }
    return copy_best_model(experiment_dir, source, provenance), provenance["step"], relative


# ---------------------------------------------------------------------------------------------
# trials.csv and plots
# ---------------------------------------------------------------------------------------------


def param_keys(spec: SearchSpec, trials: Sequence[TrialRecord]) -> list[str]:
    """Columns for sampled values: the spec's searched keys, then any other key a trial has."""
    keys = spec.sampled_keys()
    fixed = spec.fixed_values()
    extra = sorted({k for t in trials for k in t.params if k not in keys and k not in fixed})
    return keys + extra


def write_trials_csv(
    path: Path, spec: SearchSpec, trials: Sequence[TrialRecord], keys: Sequence[str]
) -> Path:
    """One row per trial, best first (see module docstring for the columns)."""
    header = ["trial_id", "status", *keys, f"best_{spec.metric}", "best_step", "last_step",
              "wall_time_s", "error"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for t in rank_trials(trials, spec.mode):
            writer.writerow([
                t.trial_id, t.status, *(_csv_value(t.params.get(k)) for k in keys),
                _csv_value(t.best_value), _csv_value(t.best_step), _csv_value(t.last_step),
                _csv_value(t.wall_time_s), t.error or "",
            ])
    return path


def curve(results: Iterable[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` over a trial's results, skipping rows without either."""
    steps, values = [], []
    for row in results:
        step, value = _as_int(row.get("step")), _as_float(row.get(key))
        if step is not None and value is not None:
            steps.append(step)
            values.append(value)
    return steps, values


def plot_curves(
    path: Path, trials: Sequence[TrialRecord], key: str, title: str, winner: str | None
) -> Path:
    """`key` vs step for every trial on one chart; the winner drawn thicker."""
    fig, ax = plt.subplots(figsize=(9, 5))
    drawn = 0
    for t in trials:
        steps, values = curve(t.results, key)
        if not steps:
            continue
        is_winner = t.trial_id == winner
        label = f"{t.trial_id} (winner)" if is_winner else t.trial_id
        ax.plot(steps, values, marker=".", linewidth=2.5 if is_winner else 1.0,
                zorder=3 if is_winner else 2, label=label)
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
    """How to draw a hyperparameter: ("categorical", options) / ("log", []) / ("linear", []).

    `choice` (or any non-numeric value) is categorical, in the order the space lists the
    options; the space's log-scale distributions get a log axis.
    """
    entry = spec.space.get(key)
    choices = list(entry["choice"]) if is_distribution(entry) and "choice" in entry else None
    if choices is not None or not all(_as_float(v) is not None for v in values):
        options = choices or []
        options += [v for v in values if v not in options]
        return "categorical", options
    return ("log" if key in log_scale_keys_of(spec.space) else "linear"), []


_POINT_STYLES = {  # status category -> (label, scatter style)
    "completed": ("completed", {"marker": "o", "color": "tab:blue"}),
    "stopped by ASHA": ("stopped early (partial budget)",
                        {"marker": "o", "facecolors": "none", "edgecolors": "tab:blue"}),
    "interrupted": ("interrupted", {"marker": "s", "facecolors": "none",
                                    "edgecolors": "tab:gray"}),
    "errored": ("errored", {"marker": "x", "color": "tab:gray"}),
}


def plot_param(
    path: Path, spec: SearchSpec, trials: Sequence[TrialRecord], key: str, winner: str | None
) -> Path:
    """Sampled value of `key` vs the best metric each trial reached; the winner as a star.

    Marker shape tells full-budget scores from partial ones (ASHA-stopped, interrupted) and
    from errored trials, which are not comparable on equal terms.
    """
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
        label, style = _POINT_STYLES.get(status_category(t.status), _POINT_STYLES["completed"])
        ax.scatter([x], [t.best_value], s=40, zorder=2,
                   label=None if label in labelled else label, **style)
        labelled.add(label)
    if kind == "categorical":
        ax.set_xticks(range(len(options)), [_label(o) for o in options])
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
    plots_dir: Path, spec: SearchSpec, trials: Sequence[TrialRecord], keys: Sequence[str],
    winner: str | None,
) -> list[Path]:
    """All charts of the report; returns their paths in report order."""
    plots_dir.mkdir(exist_ok=True)
    written = [
        plot_curves(plots_dir / "metric_curves.png", trials, spec.metric,
                    f"{spec.metric} per trial ({spec.mode} is better)", winner),
        plot_curves(plots_dir / "train_loss_curves.png", trials, "train_loss",
                    "train_loss per trial", winner),
    ]
    for key in keys:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", key)
        written.append(plot_param(plots_dir / f"param_{name}.png", spec, trials, key, winner))
    return written


# ---------------------------------------------------------------------------------------------
# Test metrics (winner and repeated seeds)
# ---------------------------------------------------------------------------------------------


def winner_test_metrics(
    experiment_dir: Path, best_config: Mapping[str, Any] | None, best_config_path: Path | None,
    model_dir: Path | None, evaluate: bool,
) -> tuple[dict[str, Any] | None, str | None]:
    """(metrics, error): a current `test_metrics.json` is reused; else evaluate if asked.

    `test_metrics.json` is current when it is not older than `best_model/` (it was computed on
    this very model; equal times count, file clocks tick coarsely). Evaluation needs a test
    split in the run config; its failure is returned, not raised, so the rest of the export
    survives it.
    """
    path = experiment_dir / TEST_METRICS_FILE
    if model_dir is None or best_config is None or best_config_path is None:
        return None, None
    if path.is_file() and path.stat().st_mtime_ns >= model_dir.stat().st_mtime_ns:
        metrics = _read_json(path)
        if isinstance(metrics, dict):
            return metrics, None
    if not evaluate:
        return None, None
    try:
        metrics = _evaluate_on_test(dict(best_config), best_config_path, model_dir)
    except Exception as exc:  # the export's other outputs must survive a failed evaluation
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"warning: test evaluation of {model_dir} failed: {message}", file=sys.stderr)
        return None, message
    if metrics is not None:
        tmp = path.with_name(f".{path.name}.tmp")
        metrics = _json_safe(metrics)
        tmp.write_text(json.dumps(metrics, indent=2, default=float) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    return metrics, None


def _evaluate_on_test(
    best_config: dict[str, Any], config_path: Path, model_dir: Path
) -> dict[str, Any] | None:
    """Run detr_core's test evaluation; None when the run config has no test split.

    Imported here: detr_core.evaluate pulls in torch and transformers, which the rest of the
    export does not need.
    """
    config = _typed_run_config(best_config, config_path)
    data = config.data
    synthetic = getattr(data, "synthetic", None)
    has_test = getattr(data, "test", None) is not None or (
        synthetic is not None and getattr(synthetic, "num_test", 0) > 0
    )
    if not has_test:
        return None
    from detr_core.evaluate import evaluate_model

    return dict(evaluate_model(model_dir, config, split="test"))


def _typed_run_config(best_config: dict[str, Any], config_path: Path) -> Any:
    """Validated `RunConfig` of the winner, relative paths resolved as `--config` would."""
    from detr_core.config import resolve_paths, run_config_from_dict

    config = run_config_from_dict(best_config, source=str(config_path))
    return resolve_paths(config, config_path.parent)


def read_seed_metrics(experiment_dir: Path) -> dict[str, dict[str, Any]]:
    """`final_seeds/seed_<S>/test_metrics.json` of the winner's repeated runs, by seed label."""
    found = {}
    for path in (experiment_dir / SEEDS_DIR).glob("seed_*/test_metrics.json"):
        metrics = _read_json(path)
        if isinstance(metrics, dict):
            found[path.parent.name.removeprefix("seed_")] = metrics
    return dict(sorted(found.items(), key=lambda kv: _seed_key(kv[0])))


# ---------------------------------------------------------------------------------------------
# REPORT.md
# ---------------------------------------------------------------------------------------------


def trials_table(spec: SearchSpec, trials: Sequence[TrialRecord], keys: Sequence[str]) -> str:
    """Markdown table of all trials, best metric first."""
    headers = ["rank", "trial", "status", f"best {spec.metric}", "best step", "last step",
               "time (s)", *keys]
    rows = []
    for rank, t in enumerate(rank_trials(trials, spec.mode), start=1):
        rows.append([
            str(rank) if t.best_value is not None else "-", f"`{t.trial_id}`", t.status,
            _fmt(t.best_value), _fmt(t.best_step), _fmt(t.last_step),
            _fmt(t.wall_time_s, ".0f"), *(_fmt(t.params.get(k)) for k in keys),
        ])
    return _md_table(headers, rows)


def test_metrics_table(metrics: Mapping[str, Any]) -> str:
    """Markdown table of one test evaluation (the diary's mAP, IoU and centre-error figures)."""
    rows = [[key, _fmt(metrics.get(key), missing="n/a")] for key in TEST_METRIC_KEYS]
    rows.append(["missed / num_gt", f"{_fmt(metrics.get('missed'), missing='n/a')} / "
                                    f"{_fmt(metrics.get('num_gt'), missing='n/a')}"])
    table = _md_table(["metric", "value"], rows)
    per_class = metrics.get("per_class_ap")
    if isinstance(per_class, Mapping) and per_class:
        table += "\n\nPer-class AP:\n\n" + _md_table(
            ["class", "AP"], [[str(k), _fmt(v)] for k, v in per_class.items()])
    return table


def seeds_table(seeds: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per seed, then mean ± std (sample std, n-1) of each metric over the seeds."""
    headers = ["seed", *TEST_METRIC_KEYS, "missed / num_gt"]
    rows = [[s, *(_fmt(m.get(k), missing="n/a") for k in TEST_METRIC_KEYS),
             f"{_fmt(m.get('missed'))} / {_fmt(m.get('num_gt'))}"] for s, m in seeds.items()]
    summary = ["**mean ± std**"]
    for key in (*TEST_METRIC_KEYS, "missed"):
        values = [v for v in (_as_float(m.get(key)) for m in seeds.values()) if v is not None]
        summary.append(_mean_std(values))
    gts = [v for v in (_as_float(m.get("num_gt")) for m in seeds.values()) if v is not None]
    summary[-1] += f" / {_fmt(statistics.fmean(gts)) if gts else ''}"
    return _md_table(headers, [*rows, summary])


def render_report(
    summary: ExportSummary, spec: SearchSpec, keys: Sequence[str], generated: datetime
) -> str:
    """The diary page: what was searched, how each trial ended, who won and how well."""
    exp = spec.experiment
    asha = ", ".join(f"{k} {exp[k]}" for k in ("max_t", "grace_period", "reduction_factor")
                     if k in exp)
    lines = [
        f"# Search report: {spec.name}",
        "",
        f"Generated {generated:%Y-%m-%d %H:%M} UTC by `search/export.py` from "
        f"`{_display_path(summary.experiment_dir)}`.",
        "",
        f"- Metric: `{spec.metric}` ({spec.mode}; best value ever reported per trial)",
    ]
    if asha:
        lines.append(f"- ASHA (in optimizer steps): {asha}")
    lines += [
        f"- Searched: {', '.join(f'`{k}`' for k in spec.sampled_keys()) or 'nothing'}",
        f"- Trials: {len(summary.trials)} ({_counts_text(summary.status_counts)})",
        "",
        "## Trials",
        "",
        trials_table(spec, summary.trials, keys),
        "",
        "## Curves",
        "",
    ]
    for plot in summary.plots:
        rel = plot.relative_to(summary.experiment_dir).as_posix()
        lines += [f"![{plot.stem}]({rel})", ""]
    lines += _winner_section(summary, spec, keys)
    lines += _test_sections(summary)
    lines += [
        "## How to reproduce",
        "",
        "```",
        f"python -m detr_core.train --config "
        f"{_display_path(summary.experiment_dir / 'best_config.yaml')}",
        f"tensorboard --logdir {_display_path(summary.experiment_dir)}",
        f"python search/export.py {_display_path(summary.experiment_dir)}   # rebuild this report",
        "```",
        "",
    ]
    return "\n".join(lines)


def _winner_section(summary: ExportSummary, spec: SearchSpec, keys: Sequence[str]) -> list[str]:
    winner = summary.winner
    if winner is None:
        return ["## Winner", "", f"No trial reported `{spec.metric}` yet.", ""]
    lines = [
        "## Winner",
        "",
        f"- Trial: `{winner.trial_id}` ({winner.status})",
        f"- Best `{spec.metric}`: {_fmt(winner.best_value)} at step {winner.best_step}",
        "- Config: `best_config.yaml`",
    ]
    if summary.best_model_dir is not None:
        note = "" if summary.model_step == winner.best_step else (
            f" (no checkpoint of step {winner.best_step} was kept)")
        lines.append(f"- Model: `best_model/` from `{summary.model_source}`, "
                     f"step {summary.model_step}{note}")
    else:
        lines.append("- Model: none (the trial kept no checkpoint)")
    rows = [[f"`{k}`", _fmt(winner.params[k])] for k in keys if k in winner.params]
    if rows:
        lines += ["", "Sampled values:", "", _md_table(["parameter", "value"], rows)]
    return [*lines, ""]


def _test_sections(summary: ExportSummary) -> list[str]:
    lines: list[str] = []
    if summary.test_metrics is not None:
        lines += ["## Test metrics of the winner", "", test_metrics_table(summary.test_metrics),
                  ""]
    elif summary.test_error:
        lines += ["## Test metrics of the winner", "", f"Evaluation failed: {summary.test_error}",
                  ""]
    if summary.seed_metrics:
        lines += [
            "## Repeated seeds",
            "",
            f"The winner's config retrained with {len(summary.seed_metrics)} seeds "
            f"(`{SEEDS_DIR}/`), test split:",
            "",
            seeds_table(summary.seed_metrics),
            "",
        ]
    return lines


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def export_experiment(experiment_dir: Path, evaluate_winner: bool = True) -> ExportSummary:
    """Rebuild every output of a search from its experiment folder (see module docstring).

    Raises `UserInputError` when the folder is not an experiment or holds no trials.
    """
    experiment_dir = Path(experiment_dir)
    if not experiment_dir.is_dir():
        raise UserInputError(f"{experiment_dir}: no such folder")
    spec = load_spec(experiment_dir)
    trials = load_trials(experiment_dir, spec)
    keys = param_keys(spec, trials)
    winner = pick_winner(trials, spec.mode)
    summary = ExportSummary(
        experiment_dir=experiment_dir,
        name=spec.name,
        metric=spec.metric,
        mode=spec.mode,
        trials=trials,
        status_counts=_status_counts(trials),
        winner=winner,
        trials_csv=write_trials_csv(experiment_dir / "trials.csv", spec, trials, keys),
        report_path=experiment_dir / "REPORT.md",
        plots=write_plots(experiment_dir / "plots", spec, trials, keys,
                          winner.trial_id if winner else None),
        seed_metrics=read_seed_metrics(experiment_dir),
    )
    if winner is not None:
        summary.best_config, summary.best_config_path = write_best_config(
            experiment_dir, spec, winner)
        summary.best_model_dir, summary.model_step, summary.model_source = export_best_model(
            experiment_dir, spec, winner)
    generated = datetime.now(timezone.utc)
    _write_text(summary.report_path, render_report(summary, spec, keys, generated))
    summary.test_metrics, summary.test_error = winner_test_metrics(
        experiment_dir, summary.best_config, summary.best_config_path, summary.best_model_dir,
        evaluate_winner)
    if summary.test_metrics is not None or summary.test_error:
        _write_text(summary.report_path, render_report(summary, spec, keys, generated))
    return summary


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    """CLI: export one experiment folder.

    Exit 0 when done; 1 when no trial reported the metric or the test evaluation failed (the
    other outputs are written anyway); 2 on a user error (not an experiment, no trials).
    """
    parser = argparse.ArgumentParser(
        prog="search/export.py",
        description="Rebuild best_config.yaml, best_model/, trials.csv, plots/ and REPORT.md "
                    "from a Ray Tune experiment folder written by search/run.py.",
    )
    parser.add_argument("experiment_dir", type=Path, help="e.g. results/iou")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="do not evaluate the winner on the test split")
    args = parser.parse_args(argv)
    summary = export_experiment(args.experiment_dir, evaluate_winner=not args.no_evaluate)
    print(summary.describe())
    return 0 if summary.winner is not None and not summary.test_error else 1


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _status_counts(trials: Sequence[TrialRecord]) -> dict[str, int]:
    counts = Counter(status_category(t.status) for t in trials)
    return {c: counts[c] for c in CATEGORIES if counts[c]}


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {c}" for c, n in counts.items()) or "none"


def _as_float(value: Any) -> float | None:
    """A finite float, or None for missing / NaN / inf / non-numbers (bools excluded)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _as_int(value: Any) -> int | None:
    number = _as_float(value)
    return int(number) if number is not None else None


def _parse_scalar(text: str | None) -> Any:
    """A progress.csv cell back to int / float / str (None when empty)."""
    if text is None or text == "":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _json_safe(value: Any) -> Any:
    """NaN / inf -> None (null), recursively: strict JSON readers reject `NaN`."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fmt(value: Any, spec: str = ".4g", missing: str = "") -> str:
    """A table cell: floats to 4 significant digits, booleans as YAML writes them."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, float):
        return format(value, spec)
    return _label(value)


def _csv_value(value: Any) -> Any:
    return "" if value is None else value


def _mean_std(values: Sequence[float]) -> str:
    """`mean ± sample std` (std 0 for a single value), n/a without values."""
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4g} ± {std:.2g}"


def _seed_key(label: str) -> tuple[bool, int, str]:
    """Numeric seeds in numeric order, then any other labels alphabetically."""
    number = _as_int(label)
    return (number is None, number or 0, label)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cells(values: Sequence[str]) -> str:
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

    return "\n".join([cells(headers), cells(["---"] * len(headers)), *map(cells, rows)])


def _display_path(path: Path) -> str:
    """`path` relative to the working directory when inside it (results/iou/...), else absolute."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(resolved)


if __name__ == "__main__":
    sys.exit(main())
