"""REPORT.md: the search diary, rendered from an `ExportSummary` (Markdown, no I/O here).

Sections: settings, the trials table (best first), the curves and per-parameter charts,
"What mattered" (parameter importances, and how to open the Optuna study in optuna-dashboard),
the winner, its test metrics, the repeated seeds, and the commands to reproduce.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from detr_core.config import TEST_TABLE_METRICS, bare_name
from detr_core.files import detections_image
from search.results.formatting import fmt, md_table, mean_std
from search.results.importance import MIN_TRIALS
from search.results.reading import TrialRecord, shown_beside
from search.results.summary import ExportSummary, counts_text
from search.results.winner import rank_trials
from search.space import SearchSpec, searched_model_keys
from search.store import (
    BEST_CONFIG_FILE,
    BEST_MODEL_DIR,
    SEEDS_DIR,
    STUDY_FILE,
    UriPath,
    as_float,
    display_path,
)


def trials_table(spec: SearchSpec, trials: Sequence[TrialRecord], keys: Sequence[str]) -> str:
    """Markdown table of all trials, best metric first, with the diary's metric and the
    detection quality at each trial's best step (val split)."""
    beside = shown_beside(spec.metric)
    headers = ["rank", "trial", "status", f"best {spec.metric}", "best step",
               *(bare_name(m) for m in beside), "last step", "time (s)", "CPU-s", *keys]
    rows = []
    for rank, t in enumerate(rank_trials(trials, spec.mode), start=1):
        status = f"{t.status}, warm-start from `{t.origin}`" if t.origin else t.status
        rows.append([
            str(rank) if t.best_value is not None else "-", f"`{t.trial_id}`", status,
            fmt(t.best_value), fmt(t.best_step),
            *(fmt(t.value_at_best_step(m)) for m in beside), fmt(t.last_step),
            fmt(t.wall_time_s, ".0f"), fmt(t.cpu_seconds(spec.resources.cpus_per_trial), ".0f"),
            *(fmt(t.params.get(k)) for k in keys),
        ])
    return md_table(headers, rows)


def by_model_table(spec: SearchSpec, trials: Sequence[TrialRecord]) -> str:
    """One row per value of the searched model key(s): trials, best metric, steps and
    CPU-seconds (what a checkpoint's trials cost, and how fast it trains)."""
    keys = searched_model_keys(spec.space)
    groups: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        name = ", ".join(fmt(trial.params.get(k)) for k in keys)
        groups.setdefault(name, []).append(trial)
    rows = []
    for name, group in groups.items():
        ranked = rank_trials(group, spec.mode)
        best = ranked[0] if ranked and ranked[0].best_value is not None else None
        steps = sum(t.last_step or 0 for t in group)
        cpus = spec.resources.cpus_per_trial
        cpu = [c for c in (t.cpu_seconds(cpus) for t in group) if c is not None]
        rate = f"{steps / sum(cpu):.1f}" if cpu and sum(cpu) > 0 else "n/a"
        rows.append([f"`{name}`", str(len(group)), fmt(best.best_value if best else None),
                     f"`{best.trial_id}`" if best else "-", str(steps),
                     fmt(sum(cpu) if cpu else None, ".0f"), rate])
    return md_table([" / ".join(f"`{k}`" for k in keys), "trials", f"best {spec.metric}",
                     "best trial", "steps trained", "CPU-s", "steps per CPU-s"], rows)


def test_metrics_table(metrics: Mapping[str, Any]) -> str:
    """Markdown table of one test evaluation (the diary's mAP, IoU and centre-error figures)."""
    rows = [[key, fmt(metrics.get(key), missing="n/a")] for key in TEST_TABLE_METRICS]
    rows.append(["missed / num_gt", f"{fmt(metrics.get('missed'), missing='n/a')} / "
                                    f"{fmt(metrics.get('num_gt'), missing='n/a')}"])
    table = md_table(["metric", "value"], rows)
    per_class = metrics.get("per_class_ap")
    if isinstance(per_class, Mapping) and per_class:
        table += "\n\nPer-class AP:\n\n" + md_table(
            ["class", "AP"], [[str(k), fmt(v)] for k, v in per_class.items()])
    return table


def seeds_table(seeds: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per seed, then mean ± std (sample std, n-1) of each metric over the seeds."""
    headers = ["seed", *TEST_TABLE_METRICS, "missed / num_gt"]
    rows = [[s, *(fmt(m.get(k), missing="n/a") for k in TEST_TABLE_METRICS),
             f"{fmt(m.get('missed'))} / {fmt(m.get('num_gt'))}"] for s, m in seeds.items()]
    summary = ["**mean ± std**"]
    for key in (*TEST_TABLE_METRICS, "missed"):
        values = [v for v in (as_float(m.get(key)) for m in seeds.values()) if v is not None]
        summary.append(mean_std(values))
    gts = [v for v in (as_float(m.get("num_gt")) for m in seeds.values()) if v is not None]
    summary[-1] += f" / {fmt(statistics.fmean(gts)) if gts else ''}"
    return md_table(headers, [*rows, summary])


def render_report(
    summary: ExportSummary, spec: SearchSpec, keys: Sequence[str], generated: datetime
) -> str:
    """The diary page: what was searched, how each trial ended, who won and how well."""
    sched = spec.scheduler
    lines = [
        f"# Search report: {spec.name}",
        "",
        f"Generated {generated:%Y-%m-%d %H:%M} UTC by `search/export.py` from "
        f"`{display_path(summary.experiment_dir)}`.",
        "",
        f"- Metric: `{spec.metric}` ({spec.mode}; best value ever reported per trial)",
        f"- ASHA (in optimizer steps): max_t {sched.max_t}, grace_period "
        f"{sched.grace_period}, reduction_factor {sched.reduction_factor}",
        f"- Searched: {', '.join(f'`{k}`' for k in spec.searched_keys()) or 'nothing'}",
        f"- Trials: {len(summary.trials)} ({counts_text(summary.status_counts)})",
        "",
        *_interruption(summary),
        *_warm_start(summary),
        "## Trials",
        "",
        "CPU-s: the trial's wall time times its CPUs (torch threads). ASHA's budget is in "
        "optimizer steps; where models of different speed are searched, equal steps are not "
        "equal compute.",
        "",
        trials_table(spec, summary.trials, keys),
        "",
        *_by_model(summary, spec),
        "## Curves",
        "",
    ]
    for plot in summary.plots:
        rel = plot.relative_to(summary.experiment_dir).as_posix()
        lines += [f"![{plot.stem}]({rel})", ""]
    lines += _what_mattered(summary, spec)
    lines += _winner_section(summary, spec, keys)
    lines += _test_sections(summary)
    lines += [
        "## How to reproduce",
        "",
        "```",
        f"python -m detr_core.train --config "
        f"{display_path(summary.experiment_dir / BEST_CONFIG_FILE)}",
        f"tensorboard --logdir {display_path(summary.experiment_dir)}",
        f"python search/export.py {display_path(summary.experiment_dir)}   # rebuild this report",
        "```",
        "",
    ]
    return "\n".join(lines)


def _by_model(summary: ExportSummary, spec: SearchSpec) -> list[str]:
    """Where the model itself is searched: its values side by side (the importance of the
    choice is in "What mattered")."""
    if not searched_model_keys(spec.space):
        return []
    return ["## By model", "",
            "Each searched model's trials: how good the best got and what they cost. "
            "Recipe-relative values were resolved per trial against that model's recipe.", "",
            by_model_table(spec, summary.trials), ""]


def _interruption(summary: ExportSummary) -> list[str]:
    """The note at the top of an interrupted search: when, which trials ran, how to resume."""
    record = summary.interruption
    if not record:
        return []
    running = record.get("running_trials") or {}
    where = ", ".join(f"`{t}` at step {'-' if s is None else s}" for t, s in running.items())
    lines = [
        f"**Interrupted** by {record.get('signal', 'a signal')} at {record.get('at', '?')}: "
        f"{len(running)} trial(s) were running ({where or 'none'}); finished trials, their "
        "checkpoints and the Optuna study are kept. Resume with:",
        "",
        "```",
        str(record.get("resume_command", "")),
        "```",
        "",
    ]
    return lines


def _warm_start(summary: ExportSummary) -> list[str]:
    """Where the warm-start trials came from, how many were taken and why others were not."""
    record = summary.warm_start
    if record is None:
        return []
    return [
        "## Warm start",
        "",
        f"The Optuna study was seeded with {len(record.trials)} trial(s) of earlier searches "
        "(their values, best value and intermediate values by step; ASHA-stopped ones as "
        "PRUNED). They were not trained again and do not count toward `num_samples`; they "
        "are ranked below with their origin, and one of them may win.",
        "",
        *(f"- {line.strip()}" if not line.startswith(" ") else f"  - {line.strip()}"
          for line in record.lines()),
        "",
    ]


def _what_mattered(summary: ExportSummary, spec: SearchSpec) -> list[str]:
    imp = summary.importances
    lines = ["## What mattered", ""]
    if imp is None or not imp.values:
        reason = imp.reason if imp is not None else "not computed"
        lines += [f"No importances: {reason}. They need at least {MIN_TRIALS} trials with a "
                  f"value at the first rung.", ""]
    else:
        lines += [
            f"How much of the variation of `{imp.metric}` each searched parameter explains, "
            f"measured at the first ASHA rung (step {imp.rung_step}), which every trial "
            f"reaches unless cut before it: N = {imp.n_trials} trials, ASHA-stopped ones "
            "included (Optuna's own evaluators would only see the few COMPLETE trials).",
            f"Method: {imp.method}. Importances sum to 1; with few trials they are rough.",
            "",
            md_table(["parameter", "importance"],
                     [[f"`{k}`", f"{v:.3f}"] for k, v in imp.values.items()]),
            "",
        ]
        if summary.importances_plot is not None:
            rel = summary.importances_plot.relative_to(summary.experiment_dir).as_posix()
            lines += [f"![importances]({rel})", ""]
    study = display_path(summary.experiment_dir / STUDY_FILE)
    fetch = []
    if isinstance(summary.experiment_dir, UriPath) and not summary.experiment_dir.is_local_fs:
        fetch = [f"# copy {study} here first (e.g. `aws s3 cp` / `gcloud storage cp`)"]
        study = STUDY_FILE
    lines += [
        f"The Optuna study (`{spec.name}`, every trial with its intermediate values; "
        "ASHA-stopped trials are PRUNED) opens in optuna-dashboard from its journal file:",
        "",
        "```",
        "pip install optuna-dashboard",
        *fetch,
        f"optuna-dashboard {study}",
        "```",
        "",
    ]
    return lines


def _winner_section(summary: ExportSummary, spec: SearchSpec, keys: Sequence[str]) -> list[str]:
    winner = summary.winner
    if winner is None:
        return ["## Winner", "", f"No trial reported `{spec.metric}` yet.", ""]
    origin = (f", a warm-start trial of `{winner.origin}`: not trained by this search; "
              f"`{BEST_CONFIG_FILE}` is its run config there and the model its checkpoint "
              "from there" if winner.origin else "")
    lines = [
        "## Winner",
        "",
        f"- Trial: `{winner.trial_id}` ({winner.status}){origin}",
        f"- Best `{spec.metric}`: {fmt(winner.best_value)} at step {winner.best_step}",
        f"- Config: `{BEST_CONFIG_FILE}`",
    ]
    if summary.best_model_dir is not None:
        note = "" if summary.model_step == winner.best_step else (
            f" (no checkpoint of step {winner.best_step} was kept)")
        lines.append(f"- Model: `{BEST_MODEL_DIR}/` from `{summary.model_source}`, "
                     f"step {summary.model_step}{note}")
    else:
        lines.append("- Model: none (the trial kept no checkpoint)")
    rows = [[f"`{k}`", fmt(winner.params[k])] for k in keys if k in winner.params]
    if rows:
        lines += ["", "Sampled values:", "", md_table(["parameter", "value"], rows)]
    return [*lines, ""]


def _test_sections(summary: ExportSummary) -> list[str]:
    lines: list[str] = []
    if summary.test_metrics is not None:
        lines += ["## Test metrics of the winner", "",
                  "Detection quality is read from mAP@.5, recall and precision (confident "
                  "detections, score >= the run's `evaluation.score_threshold`, matched "
                  "one-to-one to ground truth of their class at IoU >= 0.5; precision below "
                  "recall means duplicates or false alarms); `iou_mean` and the centre error "
                  "are the diary's localisation numbers over the pairs found.", "",
                  test_metrics_table(summary.test_metrics), ""]
        grid = (summary.best_model_dir / detections_image("test")
                if summary.best_model_dir is not None else None)
        if grid is not None and grid.is_file():
            rel = grid.relative_to(summary.experiment_dir).as_posix()
            lines += ["The winner on the first test images: ground truth (green) beside its "
                      "confident detections (red, with scores).", "",
                      f"![test detections]({rel})", ""]
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
