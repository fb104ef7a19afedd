"""The report of `benchmarks/embedded_default.py`: `embedded_default.md` from its JSON record.

Pure functions of the `results` dict the benchmark writes (no training, no files): the tables
of each part, the search's facts (trials, ASHA stops, steps and CPU-seconds, the winner), the
recipe run at the search's compute, the sentence comparing the two, and the targets table.
Rows recorded before a column or a fact existed read n/a, so an older JSON still renders.
"""

from __future__ import annotations

import statistics
from typing import Any

#: (label, test-metric key, target): each against the winner's final-seed mean, ">=".
TARGETS = (("test mAP@.5", "map_50", 0.95), ("test mAP@[.5:.95]", "map", 0.80),
           ("test precision", "precision", 0.90), ("test recall", "recall", 0.93))
#: The search's wall time (start to the retraining), seconds, "<=".
SEARCH_WALL_TARGET_S = 240.0
#: The metrics the winner-vs-recipe sentence compares, in its order.
COMPARED = (("mAP@.5", "map_50"), ("mAP", "map"), ("precision", "precision"))


def mean_std(rows: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {std:.3f}"


def _num(value: float | None, digits: int = 3) -> str:
    """A metric for the table; n/a where it is undefined (no pair found: no IoU, no centre)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]], summary_label: str | None = None) -> list[str]:
    head = ["| run | wall (s) | steps/s (end to end) | mAP | mAP@.5 | recall | precision | "
            "IoU mean (pairs found) | centre error px | missed / GT |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    # precision: n/a in rows recorded before it was a column
    body = [f"| {r['run']} | {r.get('wall_s', '')} | {r.get('steps_per_s', '')} | "
            f"{_num(r['map'])} | {_num(r['map_50'])} | {_num(r['recall'])} | "
            f"{_num(r.get('precision'))} | {_num(r['iou_mean'])} | "
            f"{_num(r['center_error_px'], 2)} | "
            f"{r['missed']} / {r['num_gt']} |" for r in rows]
    if summary_label:
        body.append(f"| **{summary_label}: mean ± std** | {mean_std(rows, 'wall_s')} | "
                    f"{mean_std(rows, 'steps_per_s')} | {mean_std(rows, 'map')} | "
                    f"**{mean_std(rows, 'map_50')}** | **{mean_std(rows, 'recall')}** | "
                    f"**{mean_std(rows, 'precision')}** | {mean_std(rows, 'iou_mean')} | "
                    f"{mean_std(rows, 'center_error_px')} | "
                    f"{mean_std(rows, 'missed')} |")
    return head + body


def seed_mean(search: dict[str, Any], key: str) -> float | None:
    """The mean of `key` over the winner's final seeds (None where none recorded it)."""
    values = [v[key] for v in search.get("final_seeds", {}).values() if v.get(key) is not None]
    return statistics.fmean(values) if values else None


def _value(value: Any) -> str:
    """A searched value for prose: numbers to 3 significant digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.3g}"


def search_facts_line(s: dict[str, Any]) -> str:
    """Trials, ASHA stops, steps and CPU-seconds, the winner's checkpoint and values."""
    na = "n/a"
    steps = s.get("steps_trained")
    cpu = s.get("cpu_s")
    values = s.get("winner_values")
    shown = ("; ".join(f"{k} {_value(v)}" for k, v in values.items()) if values is not None
             else na)
    checkpoint = s.get("winner_checkpoint")
    return (f"Trials: {s.get('trials', na)}, {s.get('asha_stopped', na)} stopped by ASHA; "
            f"steps trained (sum of every trial's last step): "
            f"{na if steps is None else f'{steps:,}'}; CPU-s (sum of trials.csv cpu_s): "
            f"{na if cpu is None else f'{cpu:,.0f}'}. Winner's checkpoint: "
            f"{na if checkpoint is None else f'`{checkpoint}`'}; its searched values: {shown}.")


def recipe_lines(r: dict[str, Any]) -> list[str]:
    """The recipe run's table and what it trained with."""
    values = r.get("recipe")
    steps = "n/a" if r.get("max_steps") is None else f"{r['max_steps']:,}"
    took = ("the Trainer's defaults (the checkpoint has no recipe)" if not values else
            f"the recipe of {values.get('name', r.get('checkpoint'))}: " + ", ".join(
                f"{k} {_value(v)}" for k, v in values.items() if k != "name"))
    return ["### The checkpoint's recipe, one run at the search's compute", "",
            *table([r["run"]]), "",
            f"`{r.get('checkpoint')}` trained once (seed 42) on the search's base run "
            f"(search_spaces/iou.yaml: same data, optimizer, evaluation) with GIoU, no warm-up "
            f"and {steps} steps, the search's steps trained (every trial "
            f"trains the same checkpoint, so a step costs the same); learning rate, backbone "
            f"ratio, weight decay and clipping left unset: {took}.", ""]


def comparison(search: dict[str, Any], recipe: dict[str, Any]) -> str:
    """One sentence: the winner's final-seed means against the recipe run, metric by metric."""
    n = len(search.get("final_seeds", {}))
    parts = []
    for label, key in COMPARED:
        ours, theirs = seed_mean(search, key), recipe["run"].get(key)
        if ours is None or theirs is None:
            parts.append(f"{label} n/a")
        elif ours > theirs:
            parts.append(f"{label} {ours:.3f} beats the recipe run's {theirs:.3f} by "
                         f"{ours - theirs:.3f}")
        else:
            parts.append(f"{label} {ours:.3f} does not beat the recipe run's {theirs:.3f}: "
                         f"short by {theirs - ours:.3f}")
    steps, budget = search.get("steps_trained"), recipe.get("max_steps")
    compute = ("At equal compute" if steps == budget else
               f"Not at equal compute (the search trained {steps} steps, the recipe run "
               f"{budget}: rerun `--parts recipe`)")
    return f"{compute}, the winner's {n}-seed mean test " + "; ".join(parts) + "."


def _verdict(value: float | None, target: float, at_least: bool, unit: str = "",
             digits: int = 3) -> str:
    """`met (by M)` or `**missed by M**`: the margin to `target` (reached at `>=` or `<=`)."""
    if value is None:
        return "n/a"
    margin = value - target if at_least else target - value
    if margin >= 0:
        return f"met (by {margin:.{digits}f}{unit})"
    return f"**missed by {-margin:.{digits}f}{unit}**"


def targets_lines(search: dict[str, Any]) -> list[str]:
    """The targets table: each test metric's final-seed mean, and the search's wall time."""
    n = len(search.get("final_seeds", {}))
    lines = ["### Targets", "", "| target | value | goal | |", "| --- | --- | --- | --- |"]
    for label, key, goal in TARGETS:
        value = seed_mean(search, key)
        lines.append(f"| {label}, winner's {n}-seed mean | {_num(value)} | >= {goal:.2f} | "
                     f"{_verdict(value, goal, at_least=True)} |")
    wall = search.get("search_wall_s")
    lines.append(f"| search wall time (start to the retraining) | "
                 f"{'n/a' if wall is None else f'{wall} s'} | <= {SEARCH_WALL_TARGET_S:.0f} s | "
                 f"{_verdict(wall, SEARCH_WALL_TARGET_S, False, ' s', 1)} |")
    return [*lines, ""]


def render(results: dict[str, Any]) -> str:
    lines = ["# The embedded default: quality and speed on this machine", "",
             f"`python benchmarks/embedded_default.py` on {results['machine']}. Test split of "
             "the synthetic rectangles / ellipses / triangles task (128 images), score threshold "
             "0.5. Recall: confident detections matched one-to-one to ground truth of their "
             "class at IoU >= 0.5; precision: the matched share of the confident detections "
             "(duplicates lower it; n/a in rows recorded before it was a column). IoU mean and "
             "centre error are over the pairs found.", ""]
    if "train" in results:
        lines += ["## `python -m detr_core.train` (fine-tunes `builtin:tiny-shapes`)", "",
                  *table(results["train"], "fine-tuned"), ""]
    if "scratch" in results:
        lines += ["## The same runs from random weights (`model: {preset: tiny}`)", "",
                  *table(results["scratch"], "from scratch"), ""]
    if "freeze" in results:
        f = results["freeze"]
        lines += ["## `freeze_backbone: true` vs `false` (pretrained backbone)", "",
                  *table(f["runs"]), "",
                  f"Optimizer steps/s measured side by side in one process (2 x 150 steps each, "
                  f"alternating): trained {f['train_steps_per_s']['trained']}, frozen "
                  f"{f['train_steps_per_s']['frozen']}: frozen / trained = "
                  f"**{f['frozen_over_trained']}**.", ""]
    search = results.get("search")
    if search is not None:
        n = len(search["final_seeds"])
        seeds = [{"run": k, **v} for k, v in search["final_seeds"].items()]
        lines += ["## `make run` (search_spaces/iou.yaml), winner retrained with "
                  f"`--final-seeds {n}`", "",
                  f"Search wall time (start to the retraining): **{search['search_wall_s']} s**; "
                  f"with the {n} seeds: {search['total_wall_s']} s; console: "
                  f"{search['console_lines']} lines. {search['winner']}", "",
                  search_facts_line(search), "",
                  *table([{"run": "winner (its best step)", **search["winner_test"]}]), "",
                  *table(seeds, f"winner's config, {n} seeds"), ""]
    if "recipe" in results:
        lines += recipe_lines(results["recipe"])
        if search is not None:
            lines += [comparison(search, results["recipe"]), ""]
    if search is not None:
        lines += targets_lines(search)
    return "\n".join(lines)
