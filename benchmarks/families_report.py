"""The pure parts of `benchmarks/families.py`: its two rules and its report.

Kept apart from the runner so the tests can check them on hand-made records without training:

- `value_at_budget` / `budget_scores` / `verdict`: the committed rule that picks the
  checkpoint `make run` searches (val mAP@.5 after B CPU-seconds of training, `RULE`);
- `choose_learning_rate` / `recipe_json`: the rule that turns the learning-rate grid into a
  checkpoint's measured `recipe.json`;
- `write_report`: `results/benchmarks/families.md` and its pretraining plot.

A run record (one line of `benchmarks/data/families.jsonl`) has `kind` (`grid`: the
learning-rate grid, `equal`: the equal-step fine-tuning), `checkpoint` (a `builtin:` name
without the prefix), `seed`, `steps` (its max_steps), `learning_rate`, `recipe` (the four
recipe values it stated), `parameters` and `curve` (one row per evaluation: `step`,
`eval_<metric>` and, for `equal` runs, `test_<metric>`).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The committed rule, word for word as in `benchmarks/families.py`'s docstring.
RULE = (
    "The checkpoint `make run` searches is the one with the highest mean val mAP@.5 (3 seeds) "
    "after B = 90 CPU-seconds of training, where a checkpoint's training CPU-seconds at step s "
    "are s divided by its steps/s (one thread, timed alone: `--time-steps`), and its val "
    "mAP@.5 at B is that of its last evaluation at or before B. 90 CPU-seconds is about what "
    "the winning trial of an 8-trial ASHA search trains in 4 minutes on 2 cores (2 trials at "
    "once, one thread each, after about 40 s of Ray start-up). If the leader's margin is "
    "smaller than the larger of the two seed standard deviations, the faster checkpoint (more "
    "steps/s: more trials fit in the same minutes) is chosen. The test split plays no part.")
BUDGET = 90.0
INFO_BUDGETS = (45.0, 180.0)
RULE_SEEDS = 3
#: The recipe rule, as the report states it.
LR_RULE = ("the measured recipe's learning rate is the grid's one with the highest mean of its "
           "last two val mAP@.5 evaluations (a tie goes to the smaller learning rate)")
RECIPE_SOURCE = ("measured: benchmarks/families.py --recipes (lr grid 5e-4..4e-3, seed 0, 600 "
                 "steps of schedule-free AdamW on the embedded default; "
                 "results/benchmarks/families.md)")
METRICS = ("map_50", "map", "recall", "precision")


def finite(value: Any) -> bool:
    """A number that is neither NaN nor infinite (no detection leaves precision NaN)."""
    return isinstance(value, int | float) and math.isfinite(value)


def mean_std(values: list[float]) -> str:
    """`mean +- std` over seeds (the value alone for one, n/a for none)."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


# ---------------------------------------------------------------------------------------------
# the checkpoint rule


def value_at_budget(curve: list[dict[str, Any]], steps_per_s: float,
                    budget: float) -> tuple[int, float] | None:
    """(step, val mAP@.5) of the last evaluation at or before `budget` training CPU-seconds
    (step / steps_per_s); None when the first evaluation comes later."""
    rows = sorted((row for row in curve if finite(row.get("eval_map_50"))),
                  key=lambda row: row["step"])
    inside = [row for row in rows if row["step"] / steps_per_s <= budget + 1e-9]
    return (int(inside[-1]["step"]), float(inside[-1]["eval_map_50"])) if inside else None


@dataclass(frozen=True)
class Score:
    """One checkpoint's val mAP@.5 at a budget over its seeds, and which step gave it."""

    mean: float
    std: float
    seeds: int
    step: int
    ends_before: bool  # its runs stop before the budget: the value is that of its last step


def budget_scores(runs: list[dict[str, Any]], speed: dict[str, float],
                  budget: float) -> dict[str, Score]:
    """Each checkpoint's score at `budget` CPU-seconds from its `equal` runs (those with a
    steps/s and an evaluation inside the budget)."""
    found: dict[str, list[tuple[int, float, int]]] = {}
    for run in runs:
        rate = speed.get(run["checkpoint"])
        at = value_at_budget(run["curve"], rate, budget) if rate else None
        if run["kind"] == "equal" and at is not None:
            found.setdefault(run["checkpoint"], []).append((*at, run["steps"]))
    scores = {}
    for name, seen in found.items():
        values = [value for _, value, _ in seen]
        step = max(step for step, _, _ in seen)
        scores[name] = Score(statistics.mean(values),
                             statistics.stdev(values) if len(values) > 1 else math.nan,
                             len(values), step,
                             max(s for _, _, s in seen) / speed[name] < budget)
    return scores


def verdict(scores: dict[str, Score], speed: dict[str, float],
            checkpoints: tuple[str, ...]) -> tuple[str | None, str]:
    """The checkpoint the rule picks at `BUDGET` among `checkpoints`, and why in one line;
    (None, what is missing) until every one has `RULE_SEEDS` seeds and a steps/s."""
    missing = [name for name in checkpoints
               if name not in scores or scores[name].seeds < RULE_SEEDS or name not in speed]
    if missing:
        return None, (f"no verdict yet: {', '.join(missing)} lack {RULE_SEEDS} scored seeds or "
                      "a steps/s (`--time-steps`)")
    ranked = sorted(checkpoints, key=lambda name: -scores[name].mean)
    if len(ranked) == 1:
        return ranked[0], f"{ranked[0]} is the only checkpoint"
    leader, runner = ranked[0], ranked[1]
    margin = scores[leader].mean - scores[runner].mean
    noise = max(scores[leader].std, scores[runner].std)
    said = (f"{leader} leads {runner} by {margin:.3f} val mAP@.5 at B = {BUDGET:g} CPU-s; the "
            f"larger of their seed standard deviations is {noise:.3f}")
    if margin < noise:
        faster = max((leader, runner), key=lambda name: speed[name])
        return faster, (f"{said}: the margin is smaller, so the faster one is chosen: "
                        f"**{faster}** ({speed[faster]:.1f} steps/s)")
    return leader, f"{said}: the margin is not smaller, so the leader is chosen: **{leader}**"


# ---------------------------------------------------------------------------------------------
# the recipe rule


def last_two_mean(curve: list[dict[str, Any]]) -> float | None:
    """Mean val mAP@.5 of a run's last two evaluations (None with fewer than two)."""
    values = [row["eval_map_50"] for row in sorted(curve, key=lambda row: row["step"])
              if finite(row.get("eval_map_50"))]
    return statistics.mean(values[-2:]) if len(values) >= 2 else None


def choose_learning_rate(grid_runs: list[dict[str, Any]],
                         learning_rates: tuple[float, ...]) -> float | None:
    """`LR_RULE` over one checkpoint's grid runs; None until every learning rate has a run
    with two evaluations."""
    scored = {run["learning_rate"]: last_two_mean(run["curve"]) for run in grid_runs}
    if any(scored.get(lr) is None for lr in learning_rates):
        return None
    return max(sorted(learning_rates), key=lambda lr: (scored[lr], -lr))


def recipe_json(learning_rate: float, steps: int) -> dict[str, Any]:
    """A measured `recipe.json` in the format `detr_core.model.recipes.checkpoint_recipe` reads
    (its four values, `source`, and the information-only keys tiny-shapes' recipe has)."""
    return {"learning_rate": learning_rate, "backbone_lr_ratio": 1.0, "weight_decay": 0.0,
            "max_grad_norm": 0.1, "source": RECIPE_SOURCE,
            "warmup": "none (schedule-free AdamW)",
            "ema": "none (schedule-free AdamW's own average is evaluated)",
            "schedule": f"schedule-free AdamW, constant; {steps:,} steps of batch 8",
            "image_size": "96"}


# ---------------------------------------------------------------------------------------------
# the report


def checkpoint_parameters(folder: Path) -> int:
    """Parameters of a `save_pretrained` detector folder (its pretraining head included)."""
    from transformers import AutoModelForObjectDetection

    return AutoModelForObjectDetection.from_pretrained(folder).num_parameters()


def family_title(folder: Path) -> str:
    """The family's title from the folder's `config.json` `model_type`."""
    from detr_core.model.families import FAMILIES

    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    return FAMILIES[model_type].title if model_type in FAMILIES else model_type


def pretraining_curve(info: dict[str, Any]) -> list[tuple[int, float, float]]:
    """(step, pro-rated wall minutes, val mAP@.5) of each pretraining evaluation."""
    wall, steps = float(info["wall_time_s"]), int(info["max_steps"])
    return [(int(row["step"]), row["step"] / steps * wall / 60, float(row["eval_map_50"]))
            for row in info.get("eval_history", []) if finite(row.get("eval_map_50"))]


def pretraining_section(builtin: Path, checkpoints: tuple[str, ...],
                        plot: Path) -> list[str]:
    """Section 1: each shipped checkpoint's pretraining, read from its `pretraining.json`,
    and the plot of its val mAP@.5 against (pro-rated) minutes."""
    lines = ["## 1. Pretraining of the shipped checkpoints", "",
             "Read from each folder's `pretraining.json`. Minutes of a curve point are "
             "pro-rated: step / max_steps x the run's wall time (evaluations included).", "",
             "| checkpoint | family | parameters | folder (KB) | pretraining steps | "
             "wall (min) | threads | best val mAP@.5 (step) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    curves: dict[str, list[tuple[int, float, float]]] = {}
    absent = []
    for name in checkpoints:
        folder = builtin / name
        if not (folder / "pretraining.json").is_file():
            absent.append(name)
            continue
        info = json.loads((folder / "pretraining.json").read_text())
        curves[name] = curve = pretraining_curve(info)
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 1024
        best = max(curve, key=lambda point: point[2]) if curve else None
        lines.append(f"| builtin:{name} | {family_title(folder)} | "
                     f"{checkpoint_parameters(folder):,} | {size:,.0f} | "
                     f"{int(info['max_steps']):,} | {info['wall_time_s'] / 60:.1f} | "
                     f"{info.get('machine', {}).get('threads', 'n/a')} | "
                     + (f"{best[2]:.3f} ({best[0]:,}) |" if best else "n/a |"))
    lines += [f"- builtin:{name}: no `detr_core/builtin/{name}/pretraining.json` yet "
              "(not pretrained): left out." for name in absent]
    for name, curve in curves.items():
        lines += ["", f"builtin:{name}, val mAP@.5 over pretraining:", "",
                  "| step | minutes (pro-rated) | val mAP@.5 |", "| --- | --- | --- |"]
        lines += [f"| {step:,} | {minutes:.1f} | {value:.3f} |" for step, minutes, value in curve]
    if curves:
        plot_curves(curves, plot)
        lines += ["", f"![val mAP@.5 over pretraining]({plot.name})"]
    return lines


def plot_curves(curves: dict[str, list[tuple[int, float, float]]], path: Path) -> None:
    """Val mAP@.5 against pro-rated pretraining minutes, one line per checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    for name, curve in curves.items():
        axes.plot([p[1] for p in curve], [p[2] for p in curve], marker="o", label=name)
    axes.set_xlabel("pretraining wall minutes (pro-rated from step)")
    axes.set_ylabel("val mAP@.5 (pretraining task)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def grid_section(runs: list[dict[str, Any]], learning_rates: tuple[float, ...]) -> list[str]:
    """Section 2: each grid checkpoint's val mAP@.5 curve per learning rate and the winner."""
    lines = ["## 2. Recipe grid", "", f"Rule: {LR_RULE}. Seed 0, every other setting as in "
             "section 3 (backbone at the main rate, weight decay 0, clipping 0.1); val only."]
    for name in sorted({run["checkpoint"] for run in runs if run["kind"] == "grid"}):
        mine = [run for run in runs if run["kind"] == "grid" and run["checkpoint"] == name]
        steps = sorted({row["step"] for run in mine for row in run["curve"]})
        shown = [s for s in steps if s % 100 == 0] or steps
        lines += ["", f"builtin:{name}:", "",
                  "| lr | " + " | ".join(f"step {s:,}" for s in shown)
                  + " | mean of last two |", "| --- " * (len(shown) + 2) + "|"]
        for run in sorted(mine, key=lambda run: run["learning_rate"]):
            at = {row["step"]: row.get("eval_map_50") for row in run["curve"]}
            score = last_two_mean(run["curve"])
            lines.append(f"| {run['learning_rate']:g} | " + " | ".join(
                f"{at[s]:.3f}" if finite(at.get(s)) else "n/a" for s in shown)
                + (f" | {score:.3f} |" if score is not None else " | n/a |"))
        chosen = choose_learning_rate(mine, learning_rates)
        lines += ["", f"Measured learning rate: **{chosen:g}**." if chosen is not None
                  else "Measured learning rate: none yet (the grid is incomplete)."]
    return lines


def equal_section(runs: list[dict[str, Any]], speed: dict[str, float],
                  shown_steps: tuple[int, ...]) -> list[str]:
    """Section 3: per checkpoint, its recipe, speed and the test / val metrics over seeds."""
    equal = [run for run in runs if run["kind"] == "equal"]
    names = sorted({run["checkpoint"] for run in equal})
    lines = ["## 3. Fine-tuning at equal steps", "",
             "| checkpoint | seeds | parameters | lr | backbone ratio | weight decay | "
             "clipping | steps/s (1 thread, alone) |", "| --- " * 8 + "|"]
    for name in names:
        mine = [run for run in equal if run["checkpoint"] == name]
        recipe = mine[0]["recipe"]
        rate = f"{speed[name]:.1f}" if name in speed else "n/a"
        lines.append(f"| builtin:{name} | {len(mine)} | {mine[0]['parameters']:,} | "
                     f"{recipe['learning_rate']:g} | {recipe['backbone_lr_ratio']:g} | "
                     f"{recipe['weight_decay']:g} | {recipe['max_grad_norm']:g} | {rate} |")
    for split, title in (("test", "Test split (128 images)"), ("eval", "Val split (64 images)")):
        lines += ["", f"### {title}", "",
                  "| checkpoint | metric | " + " | ".join(f"step {s:,}" for s in shown_steps)
                  + " |", "| --- | --- | " + " | ".join("---" for _ in shown_steps) + " |"]
        for name in names:
            mine = [run for run in equal if run["checkpoint"] == name]
            for metric in METRICS:
                cells = [mean_std([row[f"{split}_{metric}"] for run in mine
                                   for row in run["curve"] if row["step"] == step
                                   and finite(row.get(f"{split}_{metric}"))])
                         for step in shown_steps]
                lines.append(f"| builtin:{name} | {metric} | " + " | ".join(cells) + " |")
    return lines


def rule_section(runs: list[dict[str, Any]], speed: dict[str, float],
                 checkpoints: tuple[str, ...]) -> list[str]:
    """Section 4: the committed rule, each checkpoint's val mAP@.5 at the budgets, the verdict."""
    budgets = sorted((BUDGET, *INFO_BUDGETS))
    lines = ["## 4. The checkpoint `make run` searches", "", f"> {RULE}", "",
             f"B = {BUDGET:g} decides; {' and '.join(f'{b:g}' for b in INFO_BUDGETS)} CPU-s are "
             "information. Each cell: val mAP@.5 mean +- std over seeds (the step of the "
             "evaluation used). `*`: the runs end before that budget, so the cell is the value "
             "at their last step, where more training would have gone on.", "",
             "| checkpoint | steps/s | " + " | ".join(f"B = {b:g} CPU-s" for b in budgets)
             + " |", "| --- " * (len(budgets) + 2) + "|"]
    scored = {b: budget_scores(runs, speed, b) for b in budgets}
    for name in checkpoints:
        cells = []
        for b in budgets:
            score = scored[b].get(name)
            cells.append("n/a" if score is None else
                         f"{score.mean:.3f} +- {score.std:.3f} (step {score.step:,})"
                         f"{' *' if score.ends_before else ''}")
        rate = f"{speed[name]:.1f}" if name in speed else "n/a"
        lines.append(f"| builtin:{name} | {rate} | " + " | ".join(cells) + " |")
    chosen, why = verdict(scored[BUDGET], speed, checkpoints)
    lines += ["", f"Verdict: {why}."]
    if chosen is not None:
        lines.append(f"`make run` searches **builtin:{chosen}**.")
    return lines


def write_report(runs: list[dict[str, Any]], speed: dict[str, float], *, report: Path,
                 builtin: Path, checkpoints: tuple[str, ...], learning_rates: tuple[float, ...],
                 shown_steps: tuple[int, ...], header: list[str]) -> None:
    """`report` (markdown) and its pretraining plot beside it from the run records."""
    lines = [*header, "", *pretraining_section(
        builtin, checkpoints, report.with_name(report.stem + "_pretraining.png")),
             "", *grid_section(runs, learning_rates), "",
             *equal_section(runs, speed, shown_steps), "",
             *rule_section(runs, speed, checkpoints)]
    commits = sorted({run["commit"] for run in runs if run.get("commit")})
    lines += ["", "Commits the runs were made at: " + (", ".join(commits) or "none yet") + "."]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n")
