"""REPORT.md, the search diary, rendered from an `ExportSummary` (what one export found and
wrote), and how values look there. Markdown only, no I/O."""

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
from search.results.winner import pick_winner, rank_trials
from search.space.relative_ranges import searched_model_keys
from search.space.spec import SearchSpec
from search.store.layout import BEST_CONFIG_FILE, BEST_MODEL_DIR, FINALISTS_DIR, STUDY_FILE
from search.store.storage import ExperimentPath, UriPath, display_path
from search.trial.status import CATEGORIES, ERRORED, status_category


def label(value: Any) -> str:
    """A value as YAML writes it (`true` / `false`), else `str`."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def fmt(value: Any, spec: str = ".4g", missing: str = "") -> str:
    """A table cell: floats to 4 significant digits, booleans as YAML writes them."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, spec) if isinstance(value, float) else label(value)


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
        win, fin = self.winner, self.finalists
        if win is None:
            lines.append(f"no trial reported {self.metric}: no best_config.yaml written")
        else:
            origin = f" (warm-start trial of {win.origin})" if win.origin else ""
            lines.append(f"winner {win.trial_id}{origin}: best {self.metric} = "
                         f"{fmt(win.best_value)} at step {win.best_step}")
        chosen = fin.winner if fin is not None else None
        if chosen is not None:
            lines.append(f"finalists:   configuration #{chosen.configuration.number} (trial "
                         f"{chosen.configuration.source_trial}) won: mean {self.metric} "
                         f"{fmt(chosen.mean)} over {len(chosen.values)} fresh seeds, of "
                         f"{len(fin.configurations)} configuration(s)")
        elif fin is not None:
            lines.append(f"finalists:   not finished ({sum(1 for r in fin.runs if r.ended)} of "
                         f"{fin.plan.runs} runs ended): the winner is the search's best run "
                         "for now")
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
    """All trials, best first, with the `SHOWN_AT_BEST_STEP` metrics at each best step (val)."""
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
    """One row per value of the searched model key(s): what its trials reached and cost."""
    keys = searched_model_keys(spec.space)
    groups: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        groups.setdefault(", ".join(fmt(trial.params.get(k)) for k in keys), []).append(trial)
    rows = []
    for name, group in groups.items():
        best = pick_winner(group, spec.mode)
        steps = sum(t.last_step or 0 for t in group)
        cpu = [c for c in (t.cpu_seconds(spec.resources.cpus_per_trial) for t in group)
               if c is not None]
        rows.append([f"`{name}`", str(len(group)), fmt(best.best_value if best else None),
                     f"`{best.trial_id}`" if best else "-", str(steps),
                     fmt(sum(cpu) if cpu else None, ".0f"),
                     f"{steps / sum(cpu):.1f}" if sum(cpu) > 0 else "n/a"])
    return md_table([" / ".join(f"`{k}`" for k in keys), "trials", f"best {spec.metric}",
                     "best trial", "steps trained", "CPU-s", "steps per CPU-s"], rows)


def test_metrics_table(metrics: Mapping[str, Any]) -> str:
    """One test evaluation (the diary's mAP, IoU and centre-error figures), per-class AP."""
    cell = {key: fmt(metrics.get(key), missing="n/a")
            for key in (*TEST_TABLE_METRICS, "missed", "num_gt")}
    rows = [[key, cell[key]] for key in TEST_TABLE_METRICS]
    rows.append(["missed / num_gt", f"{cell['missed']} / {cell['num_gt']}"])
    table = md_table(["metric", "value"], rows)
    per_class = metrics.get("per_class_ap")
    if isinstance(per_class, Mapping) and per_class:
        table += "\n\nPer-class AP:\n\n" + md_table(
            ["class", "AP"], [[str(k), fmt(v)] for k, v in per_class.items()])
    return table


def _mean_std(values: Sequence[float]) -> str:
    if len(values) < 2:
        return fmt(values[0]) if values else "n/a"
    return f"{fmt(statistics.fmean(values))} ± {fmt(statistics.stdev(values))}"


def finalists_table(outcome: FinalistsOutcome, spec: SearchSpec) -> str:
    """One row per configuration, best mean first: its search run, then its fresh runs."""
    headers = ["configuration", "values", f"search's run ({spec.metric})", "fresh runs",
               f"{spec.metric} mean ± std", *(label for _, label in TEST_COLUMNS)]
    rows = []
    for item in outcome.ranked():
        c = item.configuration
        name = f"#{c.number}: trial `{c.source_trial}` (search rank {c.rank})"
        if outcome.winner is item:
            name = f"**{name}, winner**"
        runs = f"{sum(1 for r in item.runs if r.finished)} of {len(outcome.plan.seeds)}"
        errored = sum(1 for r in item.runs if r.trial.status == ERRORED)
        if errored:
            runs += f", {errored} errored"
        values = ", ".join(f"{k.rsplit('.', 1)[-1]}={fmt(v)}" for k, v in c.values.items())
        rows.append([name, values or "-", fmt(c.search_value), runs, _mean_std(item.values),
                     *(_mean_std(item.test_values(key)) for key, _ in TEST_COLUMNS)])
    return md_table(headers, rows)


def lead_sentence(outcome: FinalistsOutcome, spec: SearchSpec) -> str:
    """Whether the winner's lead beats the standard error of the difference of means (Welch)."""
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
    error = math.sqrt(sum((c.std or 0.0) ** 2 / len(c.values) for c in (winner, runner_up)))
    if error == 0.0 or lead > error:
        verdict = (f"larger than the standard error of that difference ({fmt(error)}): the "
                   "seeds tell them apart")
    else:
        verdict = (f"within the standard error of that difference ({fmt(error)}): "
                   f"{len(outcome.plan.seeds)} seeds do not tell them apart, either is a fair "
                   "pick")
    return (f"The winner #{winner.configuration.number} leads the runner-up "
            f"#{runner_up.configuration.number} by {fmt(lead)} in mean {spec.metric}, "
            f"{verdict}.")


def blocks(*parts: str | None) -> list[str]:
    """Markdown blocks, each followed by a blank line (None: left out)."""
    return [line for part in parts if part is not None for line in (part, "")]


def _code(*commands: str) -> str:
    return "\n".join(["```", *commands, "```"])


def render_report(
    summary: ExportSummary, spec: SearchSpec, keys: Sequence[str], generated: datetime
) -> str:
    """The diary page: what was searched, how each trial ended, who won and how well."""
    sched, where = spec.scheduler, display_path(summary.experiment_dir)
    lines = blocks(
        f"# Search report: {spec.name}",
        f"Generated {generated:%Y-%m-%d %H:%M} UTC by `search/export.py` from `{where}`.",
        f"- Metric: `{spec.metric}` ({spec.mode}; best value ever reported per trial)\n"
        f"- ASHA (in optimizer steps): max_t {sched.max_t}, grace_period "
        f"{sched.grace_period}, reduction_factor {sched.reduction_factor}\n"
        f"- Searched: {', '.join(f'`{k}`' for k in spec.searched_keys()) or 'nothing'}\n"
        f"- Trials: {len(summary.trials)} ({counts_text(summary.status_counts)})",
        *_interruption(summary.interruption), *_warm_start(summary.warm_start),
        "## Trials",
        "CPU-s: the trial's wall time times its CPUs (torch threads). ASHA's budget is in "
        "optimizer steps; where models of different speed are searched, equal steps are not "
        "equal compute.",
        trials_table(spec, summary.trials, keys))
    if searched_model_keys(spec.space):  # the importance of the choice is in "What mattered"
        lines += blocks("## By model", "Each searched model's trials: how good the best got "
                         "and what they cost. Recipe-relative values were resolved per trial "
                         "against that model's recipe.", by_model_table(spec, summary.trials))
    lines += blocks("## Curves", *(f"![{p.stem}]({_rel(summary, p)})" for p in summary.plots))
    return "\n".join([
        *lines, *_what_mattered(summary, spec), *_finalists_section(summary.finalists, spec),
        *_winner_section(summary, spec, keys), *_test_sections(summary),
        *blocks("## How to reproduce", _code(
            f"python -m detr_core.train --config "
            f"{display_path(summary.experiment_dir / BEST_CONFIG_FILE)}",
            f"tensorboard --logdir {where}",
            f"python search/export.py {where}   # rebuild this report")),
    ])


def _rel(summary: ExportSummary, path: ExperimentPath) -> str:
    return path.relative_to(summary.experiment_dir).as_posix()


def _interruption(record: dict[str, Any] | None) -> list[str]:
    if not record:
        return []
    running = record.get("running_trials") or {}
    where = ", ".join(f"`{t}` at step {'-' if s is None else s}" for t, s in running.items())
    stage = (" in the finalists stage (the search itself had ended)"
             if record.get("stage") == "finalists" else "")
    return [f"**Interrupted** by {record.get('signal', 'a signal')} at {record.get('at', '?')}"
            f"{stage}: {len(running)} trial(s) were running ({where or 'none'}); finished "
            "trials, their checkpoints and the Optuna study are kept. Resume with:",
            _code(str(record.get("resume_command", "")))]


def _warm_start(record: WarmStartRecord | None) -> list[str]:
    if record is None:
        return []
    return ["## Warm start",
            f"The Optuna study was seeded with {len(record.trials)} trial(s) of earlier searches "
            "(their values, best value and intermediate values by step; ASHA-stopped ones as "
            "PRUNED). They were not trained again and do not count toward `num_samples`; they "
            "are ranked below with their origin, and one of them may win.",
            "\n".join(f"  - {line.strip()}" if line.startswith(" ") else f"- {line.strip()}"
                      for line in record.lines())]


def _what_mattered(summary: ExportSummary, spec: SearchSpec) -> list[str]:
    imp, folder = summary.importances, summary.experiment_dir
    if imp is None or not imp.values:
        found = [f"No importances: {imp.reason if imp is not None else 'not computed'}. They "
                 f"need at least {MIN_TRIALS} trials with a value at the first rung."]
    else:
        found = [
            f"How much of the variation of `{imp.metric}` each searched parameter explains, "
            f"measured at the first ASHA rung (step {imp.rung_step}), which every trial "
            f"reaches unless cut before it: N = {imp.n_trials} trials, ASHA-stopped ones "
            "included (Optuna's own evaluators would only see the few COMPLETE trials).\n"
            f"Method: {imp.method}. Importances sum to 1; with few trials they are rough.",
            md_table(["parameter", "importance"],
                     [[f"`{k}`", f"{v:.3f}"] for k, v in imp.values.items()]),
            None if summary.importances_plot is None
            else f"![importances]({_rel(summary, summary.importances_plot)})"]
    study, fetch = display_path(folder / STUDY_FILE), []
    if isinstance(folder, UriPath) and not folder.is_local_fs:
        fetch = [f"# copy {study} here first (e.g. `aws s3 cp` / `gcloud storage cp`)"]
        study = STUDY_FILE
    return blocks(
        "## What mattered", *found,
        f"The Optuna study (`{spec.name}`, every trial with its intermediate values; "
        "ASHA-stopped trials are PRUNED) opens in optuna-dashboard from its journal file:",
        _code("pip install optuna-dashboard", *fetch, f"optuna-dashboard {study}"))


def _winner_section(summary: ExportSummary, spec: SearchSpec, keys: Sequence[str]) -> list[str]:
    winner = summary.winner
    if winner is None:
        return blocks("## Winner", f"No trial reported `{spec.metric}` yet.")
    origin = (f", a warm-start trial of `{winner.origin}`: not trained by this search; "
              f"`{BEST_CONFIG_FILE}` is its run config there and the model its checkpoint "
              "from there" if winner.origin else "")
    chosen = summary.finalists.winner_run if summary.finalists is not None else None
    if chosen is None:
        best_step = winner.best_step
        lines = [f"- Trial: `{winner.trial_id}` ({winner.status}){origin}",
                 f"- Best `{spec.metric}`: {fmt(winner.best_value)} at step {best_step}"]
    else:
        best_step, outcome = chosen.trial.best_step, summary.finalists.winner
        lines = [f"- Configuration of trial `{winner.trial_id}` (finalist "
                 f"#{outcome.configuration.number}), chosen by its mean `{spec.metric}` "
                 f"{fmt(outcome.mean)} over {len(outcome.values)} fresh seeds",
                 f"- Config and model: its run with seed {chosen.seed}, the best of those "
                 f"runs: `{spec.metric}` {fmt(chosen.trial.best_value)} at step {best_step} "
                 f"(the search's own run: {fmt(winner.best_value)})"]
    lines.append(f"- Config: `{BEST_CONFIG_FILE}`")
    if summary.best_model_dir is None:
        lines.append("- Model: none (the trial kept no checkpoint)")
    else:
        note = ("" if summary.model_step == best_step
                else f" (no checkpoint of step {best_step} was kept)")
        lines.append(f"- Model: `{BEST_MODEL_DIR}/` from `{summary.model_source}`, "
                     f"step {summary.model_step}{note}")
    rows = [[f"`{k}`", fmt(winner.params[k])] for k in keys if k in winner.params]
    sampled = ["Sampled values:", md_table(["parameter", "value"], rows)] if rows else []
    return blocks("## Winner", "\n".join(lines), *sampled)


def _test_sections(summary: ExportSummary) -> list[str]:
    if summary.test_metrics is None:
        return blocks("## Test metrics of the winner",
                       f"Evaluation failed: {summary.test_error}") if summary.test_error else []
    grid = (summary.best_model_dir / detections_image("test")
            if summary.best_model_dir is not None else None)
    image = (["The winner on the first test images: ground truth (green) beside its confident "
              "detections (red, with scores).", f"![test detections]({_rel(summary, grid)})"]
             if grid is not None and grid.is_file() else [])
    return blocks(
        "## Test metrics of the winner",
        "Detection quality is read from mAP@.5, recall and precision (confident detections, "
        "score >= the run's `evaluation.score_threshold`, matched one-to-one to ground truth of "
        "their class at IoU >= 0.5; precision below recall means duplicates or false alarms); "
        "`iou_mean` and the centre error are the diary's localisation numbers over the pairs "
        "found.", test_metrics_table(summary.test_metrics), *image)


def _finalists_section(outcome: FinalistsOutcome | None, spec: SearchSpec) -> list[str]:
    if outcome is None:
        return []
    seeds = ", ".join(map(str, outcome.plan.seeds))
    ended = sum(1 for r in outcome.runs if r.ended)
    return blocks(
        "## Finalists",
        f"The search's {len(outcome.plan.configurations)} best distinct configurations, "
        f"re-trained to the full budget with the same fresh seeds ({seeds}; `{FINALISTS_DIR}/`"
        f"). The winner is the best mean `{spec.metric}` over those runs; the search's own "
        "run of each (chosen because it scored high) is shown, not averaged. Test numbers "
        "are evaluated once per run, for this report: they choose nothing.",
        None if outcome.complete else f"The stage has not finished: {ended} of "
        f"{outcome.plan.runs} run(s) ended, so the winner below is still the search's best "
        "single run. `--resume` finishes it.",
        finalists_table(outcome, spec), lead_sentence(outcome, spec) or None)
