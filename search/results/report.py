"""How values look in REPORT.md and on charts: table cells, Markdown tables, mean ± std.

`ExportSummary`: what one export of an experiment folder found and wrote.

The export fills it in; the report renders it; the driver and `search/export.py` print its
`describe()` lines at the end (where the report, best config, model and TensorBoard logs are).

REPORT.md: the search diary, rendered from an `ExportSummary` (Markdown, no I/O here).

Sections: settings, the trials table (best first), the curves and per-parameter charts,
"What mattered" (parameter importances, and how to open the Optuna study in optuna-dashboard),
the finalists (the top configurations re-trained with fresh seeds), the winner, its test
metrics, and the commands to reproduce.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from detr_core.config.metric_names import TEST_TABLE_METRICS, bare_name
from detr_core.files.file_io import detections_image
from search.results.finalists import TEST_COLUMNS, FinalistsOutcome
from search.results.importance import MIN_TRIALS, Importances
from search.results.reading import TrialRecord, shown_beside
from search.results.warm_trials import WarmStartRecord
from search.results.winner import rank_trials
from search.space.relative_ranges import searched_model_keys
from search.space.spec import SearchSpec
from search.store.layout import BEST_CONFIG_FILE, BEST_MODEL_DIR, FINALISTS_DIR, STUDY_FILE
from search.store.storage import ExperimentPath, UriPath, display_path
from search.trial.status import CATEGORIES, ERRORED, status_category


def label(value: Any) -> str:
    """A value as YAML writes it (`true` / `false`), else `str`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def fmt(value: Any, spec: str = ".4g", missing: str = "") -> str:
    """A table cell: floats to 4 significant digits, booleans as YAML writes them."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, float):
        return format(value, spec)
    return label(value)


def mean_std(values: Sequence[float]) -> str:
    """`mean ± sample std` (std 0 for a single value), n/a without values."""
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4g} ± {std:.2g}"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; `|` inside cells is escaped."""
    def cells(values: Sequence[str]) -> str:
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

    return "\n".join([cells(headers), cells(["---"] * len(headers)), *map(cells, rows)])


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


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.fmean(values))} ± {fmt(statistics.stdev(values))}"


def finalists_table(outcome: FinalistsOutcome, spec: SearchSpec) -> str:
    """One row per configuration, best mean first: the search's own run beside the fresh runs'
    validation mean ± std (what chose) and their test numbers (what only reports)."""
    winner = outcome.winner
    headers = ["configuration", "values", f"search's run ({spec.metric})", "fresh runs",
               f"{spec.metric} mean ± std", *(label for _, label in TEST_COLUMNS)]
    rows = []
    for item in outcome.ranked():
        c = item.configuration
        name = f"#{c.number}: trial `{c.source_trial}` (search rank {c.rank})"
        if winner is item:
            name = f"**{name}, winner**"
        finished = sum(1 for r in item.runs if r.finished)
        errored = sum(1 for r in item.runs if r.trial.status == ERRORED)
        runs = f"{finished} of {len(outcome.plan.seeds)}" + (f", {errored} errored"
                                                               if errored else "")
        values = ", ".join(f"{k.rsplit('.', 1)[-1]}={fmt(v)}" for k, v in c.values.items())
        rows.append([name, values or "-", fmt(c.search_value), runs,
                     _mean_std(item.values),
                     *(_mean_std(item.test_values(key)) for key, _ in TEST_COLUMNS)])
    return md_table(headers, rows)


def lead_sentence(outcome: FinalistsOutcome, spec: SearchSpec) -> str:
    """Whether the winner's lead over the runner-up is larger than the spread: the standard
    error of the difference of the two means (Welch)."""
    winner = outcome.winner
    if winner is None:
        return ""
    ranked = [c for c in outcome.ranked() if c.mean is not None]
    if len(ranked) < 2:
        spread = f" ± {fmt(winner.std)}" if winner.std is not None else ""
        return (f"One configuration: its {len(winner.values)} fresh runs give {spec.metric} "
                f"{fmt(winner.mean)}{spread}, against {fmt(winner.configuration.search_value)} "
                "for the search's own run (chosen because it scored high: shown, not "
                "averaged).")
    runner_up = ranked[1]
    lead = abs(winner.mean - runner_up.mean)
    parts = [(c.std or 0.0) ** 2 / len(c.values) for c in (winner, runner_up)]
    error = math.sqrt(sum(parts))
    names = (f"#{winner.configuration.number}", f"#{runner_up.configuration.number}")
    if error == 0.0 or lead > error:
        verdict = (f"larger than the standard error of that difference ({fmt(error)}): the "
                   "seeds tell them apart")
    else:
        verdict = (f"within the standard error of that difference ({fmt(error)}): "
                   f"{len(outcome.plan.seeds)} seeds do not tell them apart, either is a fair "
                   "pick")
    return (f"The winner {names[0]} leads the runner-up {names[1]} by {fmt(lead)} in mean "
            f"{spec.metric}, {verdict}.")


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
    lines += _finalists_section(summary, spec)
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
    stage = (" in the finalists stage (the search itself had ended)"
             if record.get("stage") == "finalists" else "")
    lines = [
        f"**Interrupted** by {record.get('signal', 'a signal')} at {record.get('at', '?')}"
        f"{stage}: {len(running)} trial(s) were running ({where or 'none'}); finished trials, "
        "their checkpoints and the Optuna study are kept. Resume with:",
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
    chosen = summary.finalists.winner_run if summary.finalists is not None else None
    if chosen is not None:
        outcome = summary.finalists.winner
        lines[2] = (f"- Configuration of trial `{winner.trial_id}` (finalist "
                    f"#{outcome.configuration.number}), chosen by its mean `{spec.metric}` "
                    f"{fmt(outcome.mean)} over {len(outcome.values)} fresh seeds")
        lines[3] = (f"- Config and model: its run with seed {chosen.seed}, the best of those "
                    f"runs: `{spec.metric}` {fmt(chosen.trial.best_value)} at step "
                    f"{chosen.trial.best_step} (the search's own run: {fmt(winner.best_value)})")
    best_step = chosen.trial.best_step if chosen is not None else winner.best_step
    if summary.best_model_dir is not None:
        note = "" if summary.model_step == best_step else (
            f" (no checkpoint of step {best_step} was kept)")
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
    return lines


def _finalists_section(summary: ExportSummary, spec: SearchSpec) -> list[str]:
    """The finalists: the table and whether the lead is larger than the spread; or how far an
    unfinished stage got."""
    outcome = summary.finalists
    if outcome is None:
        return []
    seeds = ", ".join(map(str, outcome.plan.seeds))
    lines = ["## Finalists", "",
             f"The search's {len(outcome.plan.configurations)} best distinct configurations, "
             f"re-trained to the full budget with the same fresh seeds ({seeds}; `{FINALISTS_DIR}/`"
             f"). The winner is the best mean `{spec.metric}` over those runs; the search's own "
             "run of each (chosen because it scored high) is shown, not averaged. Test numbers "
             "are evaluated once per run, for this report: they choose nothing.", ""]
    if not outcome.complete:
        ended = sum(1 for r in outcome.runs if r.ended)
        lines += [f"The stage has not finished: {ended} of {outcome.plan.runs} run(s) ended, so "
                  "the winner below is still the search's best single run. `--resume` "
                  "finishes it.", ""]
    lines += [finalists_table(outcome, spec), ""]
    sentence = lead_sentence(outcome, spec)
    return lines + ([sentence, ""] if sentence else [])
