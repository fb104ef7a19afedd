"""The families benchmark's rules and report, on hand-made records (no training).

`benchmarks/families.py` picks the checkpoint `make run` searches by a rule committed before
anything was measured (val mAP@.5 after B CPU-seconds, the faster checkpoint on a margin within
the seed noise) and turns a learning-rate grid into a checkpoint's `recipe.json`. Both rules,
the recipe file and the report are checked here on numbers whose answer is known.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import families, families_report
from benchmarks.families_report import (
    RULE,
    budget_scores,
    choose_learning_rate,
    recipe_json,
    value_at_budget,
    verdict,
)
from detr_core.model.recipes import Recipe


def curve(values: dict[int, float], test: bool = False) -> list[dict[str, Any]]:
    """Evaluation rows: val mAP@.5 per step (and the same as test numbers when asked)."""
    rows = []
    for step, value in values.items():
        row = {"step": step, "eval_map_50": value, "eval_map": value / 2,
               "eval_recall": value, "eval_precision": math.nan}
        if test:
            row.update({"test_map_50": value + 0.1, "test_map": value / 2,
                        "test_recall": value, "test_precision": 0.9})
        rows.append(row)
    return rows


def equal_run(name: str, seed: int, values: dict[int, float], steps: int = 600) -> dict[str, Any]:
    return {"kind": "equal", "checkpoint": name, "seed": seed, "steps": steps,
            "learning_rate": 2e-3, "parameters": 1000, "commit": "abc1234",
            "recipe": {"learning_rate": 2e-3, "backbone_lr_ratio": 1.0, "weight_decay": 0.0,
                       "max_grad_norm": 0.1},
            "curve": curve(values, test=True)}


def test_the_module_docstring_states_the_committed_rule_word_for_word() -> None:
    assert " ".join(RULE.split()) in " ".join(families.__doc__.split())


def test_value_at_budget_is_the_last_evaluation_at_or_before_it() -> None:
    rows = curve({step: step / 1000 for step in range(50, 601, 50)})
    # 5 steps/s: 90 CPU-s is step 450 exactly (included), 45 CPU-s is step 225 -> 200
    assert value_at_budget(rows, 5.0, 90.0) == (450, 0.45)
    assert value_at_budget(rows, 5.0, 45.0) == (200, 0.2)
    # 25 steps/s: 600 steps take 24 CPU-s, so every budget gets the last evaluation
    assert value_at_budget(rows, 25.0, 90.0) == (600, 0.6)
    # 0.5 steps/s: the first evaluation (100 CPU-s) comes after the budget
    assert value_at_budget(rows, 0.5, 90.0) is None
    # a NaN evaluation is no evaluation
    assert value_at_budget([*rows[:2], {"step": 150, "eval_map_50": math.nan}], 5.0, 90.0) \
        == (100, 0.1)


def test_the_rule_picks_the_leader_when_its_margin_beats_the_seed_noise() -> None:
    speed = {"slow": 5.0, "fast": 20.0}
    runs = [equal_run("slow", s, {400: 0.6, 450: 0.80 + 0.01 * s, 500: 0.99}) for s in range(3)]
    runs += [equal_run("fast", s, {550: 0.70 + 0.01 * s, 600: 0.71 + 0.01 * s})
             for s in range(3)]
    scores = budget_scores(runs, speed, 90.0)
    assert scores["slow"].step == 450 and not scores["slow"].ends_before
    assert abs(scores["slow"].mean - 0.81) < 1e-12
    assert scores["fast"].step == 600 and scores["fast"].ends_before  # 30 CPU-s < 90
    chosen, why = verdict(scores, speed, ("slow", "fast"))
    assert chosen == "slow"
    assert "leads fast by 0.090" in why and "the leader is chosen" in why


def test_the_rule_picks_the_faster_one_when_the_margin_is_within_the_seed_noise() -> None:
    speed = {"a": 5.0, "b": 10.0, "c": 20.0}
    runs = [equal_run("a", s, {450: v}) for s, v in enumerate((0.70, 0.80, 0.90))]  # std 0.1
    runs += [equal_run("b", s, {600: v}) for s, v in enumerate((0.76, 0.77, 0.78))]
    runs += [equal_run("c", s, {600: 0.1}) for s in range(3)]
    chosen, why = verdict(budget_scores(runs, speed, 90.0), speed, ("a", "b", "c"))
    # a leads b by 0.03 < 0.1: the faster of the two (b), not the fastest overall (c)
    assert chosen == "b"
    assert "the faster one is chosen: **b** (10.0 steps/s)" in why


def test_no_verdict_before_every_checkpoint_has_three_seeds_and_a_speed() -> None:
    runs = [equal_run("a", s, {450: 0.8}) for s in range(3)] + [equal_run("b", 0, {450: 0.9})]
    chosen, why = verdict(budget_scores(runs, {"a": 5.0, "b": 5.0}, 90.0),
                          {"a": 5.0, "b": 5.0}, ("a", "b"))
    assert chosen is None and "b lack 3 scored seeds" in why
    chosen, why = verdict(budget_scores(runs, {"a": 5.0}, 90.0), {"a": 5.0}, ("a", "b"))
    assert chosen is None and "b lack" in why


def grid_run(name: str, lr: float, values: dict[int, float]) -> dict[str, Any]:
    return {"kind": "grid", "checkpoint": name, "seed": 0, "steps": 600, "learning_rate": lr,
            "parameters": 1000, "commit": "abc1234",
            "recipe": {"learning_rate": lr, "backbone_lr_ratio": 1.0, "weight_decay": 0.0,
                       "max_grad_norm": 0.1}, "curve": curve(values)}


LRS = (5e-4, 1e-3, 2e-3, 4e-3)


def test_the_recipe_rule_takes_the_best_mean_of_the_last_two_evaluations() -> None:
    runs = [grid_run("x", 5e-4, {500: 0.50, 550: 0.55, 600: 0.60}),   # last two 0.575
            grid_run("x", 1e-3, {500: 0.90, 550: 0.50, 600: 0.70}),   # 0.6 (best at 500)
            grid_run("x", 2e-3, {550: 0.625, 600: 0.625}),            # 0.625
            grid_run("x", 4e-3, {550: 0.75, 600: 0.5})]               # 0.625: tie, larger lr
    assert choose_learning_rate(runs, LRS) == 2e-3
    assert choose_learning_rate(runs[:3], LRS) is None               # 4e-3 not run yet
    assert choose_learning_rate([*runs[:3], grid_run("x", 4e-3, {600: 0.9})], LRS) is None


def test_written_recipes_load_and_a_recipe_measured_elsewhere_is_kept(tmp_path: Path) -> None:
    for name in ("new", "old"):
        (tmp_path / name).mkdir()
    foreign = {"learning_rate": 0.002, "backbone_lr_ratio": 1.0, "weight_decay": 0.0,
               "max_grad_norm": 0.1, "source": "measured elsewhere"}
    (tmp_path / "old" / "recipe.json").write_text(json.dumps(foreign))
    runs = [grid_run(name, lr, {550: lr * 100, 600: lr * 100}) for name in ("new", "old")
            for lr in LRS]
    said = families.write_recipes(runs, ["new", "old", "missing"], tmp_path, 600)
    assert said[0].startswith("builtin:new: wrote") and "learning_rate 0.004" in said[0]
    assert "measured elsewhere: left as it is" in said[1]
    assert said[2] == "builtin:missing: grid incomplete, no recipe written"
    written = json.loads((tmp_path / "new" / "recipe.json").read_text())
    assert written == recipe_json(4e-3, 600)
    recipe = Recipe(**written)  # what detr_core.model.recipes.checkpoint_recipe builds
    assert (recipe.learning_rate, recipe.backbone_lr_ratio, recipe.weight_decay,
            recipe.max_grad_norm) == (4e-3, 1.0, 0.0, 0.1)
    assert recipe.source.startswith("measured: benchmarks/families.py --recipes")
    assert json.loads((tmp_path / "old" / "recipe.json").read_text()) == foreign


def test_the_report_from_a_jsonl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builtin = tmp_path / "builtin"
    (builtin / "a").mkdir(parents=True)
    (builtin / "a" / "config.json").write_text(json.dumps({"model_type": "d_fine"}))
    (builtin / "a" / "pretraining.json").write_text(json.dumps(
        {"max_steps": 6000, "wall_time_s": 3600.0, "machine": {"threads": 2},
         "eval_history": [{"step": 3000, "eval_map_50": 0.4}, {"step": 6000, "eval_map_50": 0.7}]}))
    monkeypatch.setattr(families_report, "checkpoint_parameters", lambda folder: 967_765)
    runs = [equal_run(name, s, {step: base + step / 10_000 + 0.01 * s
                                for step in range(50, 601, 50)})
            for name, base in (("a", 0.5), ("b", 0.4)) for s in range(3)]
    runs += [grid_run("a", lr, {550: 0.6, 600: 0.6 + lr}) for lr in LRS]
    runs.append({**equal_run("a", 7, {10: 0.0}, steps=10)})  # a smoke run: not this table
    data = tmp_path / "families.jsonl"
    data.write_text("".join(json.dumps(run) + "\n" for run in runs))
    report = tmp_path / "out" / "families.md"
    families_report.write_report(
        families.read_runs(data, 600), {"a": 5.0, "b": 20.0}, report=report, builtin=builtin,
        checkpoints=("a", "b"), learning_rates=LRS, shown_steps=(100, 200, 300, 600),
        header=["# title"])
    text = report.read_text()
    assert (tmp_path / "out" / "families_pretraining.png").stat().st_size > 0
    assert "| builtin:a | D-FINE | 967,765 | 0 | 6,000 | 60.0 | 2 | 0.700 (6,000) |" in text
    assert "| 3,000 | 30.0 | 0.400 |" in text  # pro-rated minutes
    assert "- builtin:b: no `detr_core/builtin/b/pretraining.json` yet" in text
    assert "Measured learning rate: **0.004**." in text
    assert "| builtin:a | map_50 | 0.520 +- 0.010 | 0.530 +- 0.010 |" in text     # val
    assert "| builtin:a | map_50 | 0.620 +- 0.010 | 0.630 +- 0.010 |" in text     # test
    assert "| builtin:a | precision | n/a | n/a | n/a | n/a |" in text            # NaN: none
    assert f"> {RULE}" in text
    # a at B = 90: step 450 (0.545 mean); b at 20 steps/s ends at 30 CPU-s: step 600 (0.47)
    assert "| builtin:a | 5.0 | 0.530 +- 0.010 (step 200) | 0.555 +- 0.010 (step 450) |" in text
    assert "| builtin:b | 20.0 | 0.470 +- 0.010 (step 600) * |" in text
    assert "`make run` searches **builtin:a**." in text
    assert "Commits the runs were made at: abc1234." in text
