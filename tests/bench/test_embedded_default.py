"""The embedded-default benchmark's search facts, recipe run and report, without training.

`benchmarks/embedded_default.py` records `make run`'s trials, steps and CPU-seconds, trains the
search's checkpoint once with its recipe at the search's compute, and reports the winner
against that run and against fixed targets. The report is checked on hand-made `results`
(targets met and missed with their margins, the comparison both ways, an older JSON without
the new keys), the facts on a hand-written experiment folder, and the recipe run's config on
the real search space's base.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import embedded_default
from benchmarks.embedded_default import recipe_run_config, search_facts, search_steps
from benchmarks.embedded_default_report import render
from detr_core.config.run_config import run_config_from_dict
from detr_core.model.recipes import RECIPE_KEYS, apply_recipe
from search.space.spec import load_search_spec

ROOT = Path(__file__).resolve().parents[2]


def metrics(map_50: float, map_: float, precision: float | None, recall: float) -> dict[str, Any]:
    return {"map": map_, "map_50": map_50, "recall": recall, "precision": precision,
            "iou_mean": 0.77, "center_error_px": 2.5, "missed": 1, "num_gt": 257}


def train_row(run: str) -> dict[str, Any]:
    """A row as recorded before precision was a column."""
    row = metrics(0.7, 0.4, None, 0.9)
    row.pop("precision")
    return {"run": run, "wall_s": 140.0, "steps": 1625, "steps_per_s": 11.6, **row}


def old_results() -> dict[str, Any]:
    """A JSON as recorded before the search facts and the recipe part existed."""
    seeds = {f"seed_{s}": metrics(0.75 + 0.02 * i, 0.45, 0.44, 0.92)
             for i, s in enumerate((42, 43, 44))}  # mean mAP@.5 0.77
    return {
        "machine": "x86_64, 2 cores",
        "train": [train_row(f"fine-tuned, seed {s}") for s in (42, 43, 44)],
        "scratch": [train_row(f"from scratch, seed {s}") for s in (42, 43, 44)],
        "freeze": {"runs": [train_row("freeze_backbone: false, seed 42"),
                            train_row("freeze_backbone: true, seed 42")],
                   "train_steps_per_s": {"trained": 12.4, "frozen": 16.7},
                   "frozen_over_trained": 1.345},
        "search": {"search_wall_s": 230.7, "total_wall_s": 425.5, "console_lines": 45,
                   "winner": "Winner: trial 8d5410fe, best eval_map_50 = 0.80 (max) at step "
                             "1500.",
                   "winner_test": metrics(0.75, 0.45, 0.44, 0.92), "final_seeds": seeds},
    }


def new_results(seed_metrics: dict[str, float], wall: float,
                recipe: dict[str, float] | None = None) -> dict[str, Any]:
    """A record with the search's facts (and a recipe run): the three seeds are identical, so
    each mean is the given value."""
    results = old_results()
    search = results["search"]
    search.update(search_wall_s=wall, trials=8, asha_stopped=5, steps_trained=6000,
                  cpu_s=480.4, winner_checkpoint="builtin:tiny-shapes-d-fine",
                  winner_values={"iou_loss": "diou", "training_args.learning_rate": 0.00155,
                                 "training_args.warmup_steps": 0.05})
    search["final_seeds"] = {f"seed_{s}": metrics(**seed_metrics) for s in (42, 43, 44)}
    if recipe is not None:
        results["recipe"] = {
            "checkpoint": "builtin:tiny-shapes-d-fine", "max_steps": 6000,
            "recipe": {"name": "builtin:tiny-shapes-d-fine", "learning_rate": 0.002,
                       "backbone_lr_ratio": 1.0, "weight_decay": 0.0, "max_grad_norm": 0.1},
            "run": {"run": "recipe of builtin:tiny-shapes-d-fine, seed 42, 6,000 steps",
                    "wall_s": 300.0, "steps": 6000, "steps_per_s": 20.0, **metrics(**recipe)}}
    return results


def target_row(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {label}"))


def test_targets_say_met_or_missed_with_the_margin() -> None:
    text = render(new_results({"map_50": 0.96, "map_": 0.70, "precision": 0.95,
                               "recall": 0.90}, wall=250.0))
    assert target_row(text, "test mAP@.5, winner's 3-seed mean") == (
        "| test mAP@.5, winner's 3-seed mean | 0.960 | >= 0.95 | met (by 0.010) |")
    assert "| 0.700 | >= 0.80 | **missed by 0.100** |" in target_row(text, "test mAP@[.5:.95]")
    assert "| 0.950 | >= 0.90 | met (by 0.050) |" in target_row(text, "test precision")
    assert "| 0.900 | >= 0.93 | **missed by 0.030** |" in target_row(text, "test recall")
    assert target_row(text, "search wall time") == (
        "| search wall time (start to the retraining) | 250.0 s | <= 240 s | "
        "**missed by 10.0 s** |")
    fast = render(new_results({"map_50": 0.96, "map_": 0.70, "precision": 0.95,
                               "recall": 0.90}, wall=200.0))
    assert "| 200.0 s | <= 240 s | met (by 40.0 s) |" in target_row(fast, "search wall time")


def test_search_facts_and_the_recipe_table_are_in_the_make_run_section() -> None:
    text = render(new_results({"map_50": 0.9, "map_": 0.5, "precision": 0.6, "recall": 0.9},
                              wall=230.0,
                              recipe={"map_50": 0.8, "map_": 0.4, "precision": 0.5,
                                      "recall": 0.9}))
    facts = ("Trials: 8, 5 stopped by ASHA; steps trained (sum of every trial's last step): "
             "6,000; CPU-s (sum of trials.csv cpu_s): 480. Winner's checkpoint: "
             "`builtin:tiny-shapes-d-fine`; its searched values: iou_loss diou; "
             "training_args.learning_rate 0.00155; training_args.warmup_steps 0.05.")
    assert facts in text
    make_run = text.index("## `make run`")
    recipe = text.index("### The checkpoint's recipe, one run at the search's compute")
    targets = text.index("### Targets")
    assert make_run < text.index(facts) < recipe < targets
    assert "| recipe of builtin:tiny-shapes-d-fine, seed 42, 6,000 steps | 300.0 | 20.0 | " \
        "0.400 | 0.800 | 0.900 | 0.500 |" in text
    assert "learning_rate 0.002, backbone_lr_ratio 1, weight_decay 0, max_grad_norm 0.1" in text


def test_the_comparison_says_by_how_much_the_winner_beats_the_recipe_or_falls_short() -> None:
    winner = {"map_50": 0.90, "map_": 0.50, "precision": 0.60, "recall": 0.9}
    beats = render(new_results(winner, 230.0, recipe={"map_50": 0.85, "map_": 0.45,
                                                      "precision": 0.55, "recall": 0.9}))
    assert ("At equal compute, the winner's 3-seed mean test mAP@.5 0.900 beats the recipe "
            "run's 0.850 by 0.050; mAP 0.500 beats the recipe run's 0.450 by 0.050; precision "
            "0.600 beats the recipe run's 0.550 by 0.050.") in beats
    short = render(new_results(winner, 230.0, recipe={"map_50": 0.93, "map_": 0.50,
                                                      "precision": 0.52, "recall": 0.9}))
    assert ("At equal compute, the winner's 3-seed mean test mAP@.5 0.900 does not beat the "
            "recipe run's 0.930: short by 0.030; mAP 0.500 does not beat the recipe run's "
            "0.500: short by 0.000; precision 0.600 beats the recipe run's 0.520 by 0.080."
            ) in short


def test_a_recipe_run_at_another_budget_is_not_called_equal_compute() -> None:
    results = new_results({"map_50": 0.9, "map_": 0.5, "precision": 0.6, "recall": 0.9}, 230.0,
                          recipe={"map_50": 0.8, "map_": 0.4, "precision": 0.5, "recall": 0.9})
    results["search"]["steps_trained"] = 7000
    text = render(results)
    assert "At equal compute" not in text
    assert "Not at equal compute (the search trained 7000 steps, the recipe run 6000" in text


def test_an_old_json_without_the_new_keys_still_renders_its_rows() -> None:
    text = render(old_results())
    for run in ("fine-tuned, seed 43", "from scratch, seed 44", "freeze_backbone: true, seed 42",
                "seed_44"):
        assert f"| {run} |" in text
    assert ("Trials: n/a, n/a stopped by ASHA; steps trained (sum of every trial's last step): "
            "n/a; CPU-s (sum of trials.csv cpu_s): n/a. Winner's checkpoint: n/a; its searched "
            "values: n/a.") in text
    assert "### The checkpoint's recipe" not in text and "At equal compute" not in text
    assert "| 0.770 | >= 0.95 | **missed by 0.180** |" in target_row(text, "test mAP@.5")
    # rows recorded before precision was a column
    assert "| fine-tuned, seed 42 | 140.0 | 11.6 | 0.400 | 0.700 | 0.900 | n/a |" in text
    no_precision = old_results()
    for seed in no_precision["search"]["final_seeds"].values():
        seed.pop("precision")
    assert "| n/a | >= 0.90 | n/a |" in target_row(render(no_precision), "test precision")


def test_the_committed_json_renders() -> None:
    results = json.loads((ROOT / "results/benchmarks/embedded_default.json").read_text())
    text = render(results)
    for part in ("train", "scratch"):
        assert all(f"| {row['run']} |" in text for row in results[part])
    assert "### Targets" in text


def test_search_facts_read_trials_csv_and_best_config(tmp_path: Path) -> None:
    (tmp_path / "trials.csv").write_text(
        "trial_id,status,iou_loss,training_args.learning_rate,training_args.warmup_steps,"
        "best_eval_map_50,best_step,eval_loss_bbox,last_step,wall_time_s,cpu_s,error,origin,"
        "source_experiment\r\n"
        "aaa,completed,diou,0.00155,0.05,0.81,1500,0.1,1500,60.5,60.5,,search,\r\n"
        "bbb,completed,giou,0.002,0.1,0.80,1500,0.1,1500,61.0,61.0,,search,\r\n"
        "ccc,stopped by ASHA at step 500,ciou,0.004,0.0,0.5,500,0.2,500,20.0,20.0,,search,\r\n"
        "ddd,errored,giou,0.001,0.2,,,,,3.0,3.0,boom,search,\r\n", encoding="utf-8")
    (tmp_path / "best_config.yaml").write_text(
        "# Best run config of search `bench`, written by search/export.py.\n"
        "# Winner: trial aaa, best eval_map_50 = 0.81 (max) at step 1500.\n"
        "model:\n  checkpoint: builtin:tiny-shapes-d-fine\n  image_size: 96\n"
        "iou_loss: diou\n", encoding="utf-8")
    assert search_facts(tmp_path) == {
        "trials": 4, "asha_stopped": 1, "steps_trained": 3500, "cpu_s": 144.5,
        "winner_checkpoint": "builtin:tiny-shapes-d-fine",
        "winner_values": {"iou_loss": "diou", "training_args.learning_rate": 0.00155,
                          "training_args.warmup_steps": 0.05}}


@pytest.fixture(scope="module")
def spec_base() -> dict[str, Any]:
    return load_search_spec(ROOT / "search_spaces/iou.yaml").base


def test_recipe_run_keeps_the_checkpoint_and_leaves_the_recipe_keys_unset(
        spec_base: dict[str, Any]) -> None:
    before = copy.deepcopy(spec_base)
    raw = recipe_run_config(spec_base, 6123)
    assert spec_base == before  # not changed in place
    assert raw["model"] == spec_base["model"]  # the same checkpoint (whichever the spec has)
    assert raw["data"] == spec_base["data"] and raw["evaluation"] == spec_base["evaluation"]
    args = raw["training_args"]
    for key in ("learning_rate", "weight_decay", "max_grad_norm"):
        assert key not in args
    assert raw["backbone_lr_ratio"] is None
    assert raw["iou_loss"] == "giou" and raw["seed"] == 42
    assert args["warmup_steps"] == 0 and "warmup_ratio" not in args
    assert args["max_steps"] == 6123 and "num_train_epochs" not in args
    assert args["optim"] == spec_base["training_args"]["optim"]
    config = run_config_from_dict(raw)
    assert config.model.checkpoint == spec_base["model"]["checkpoint"]
    _, sources = apply_recipe(config)
    assert set(sources) == set(RECIPE_KEYS)
    assert all(source != "run" for source in sources.values()), sources


def test_recipe_run_drops_what_a_base_sets_of_the_recipe_and_the_schedule(
        spec_base: dict[str, Any]) -> None:
    base = copy.deepcopy(spec_base)
    base["backbone_lr_ratio"] = 0.1
    base["iou_loss"] = "ciou"
    base["training_args"].update(learning_rate=1e-3, weight_decay=1e-4, max_grad_norm=1.0,
                                 warmup_ratio=0.1, num_train_epochs=12)
    raw = recipe_run_config(base, 100)
    assert raw["backbone_lr_ratio"] is None and raw["iou_loss"] == "giou"
    assert not {"learning_rate", "weight_decay", "max_grad_norm", "warmup_ratio",
                "num_train_epochs"} & set(raw["training_args"])
    run_config_from_dict(raw)


def test_the_recipe_part_refuses_without_the_search_result(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"results\['search'\] is absent"):
        search_steps({})
    with pytest.raises(SystemExit, match="lacks steps_trained"):
        search_steps(old_results())
    assert search_steps(new_results({"map_50": 0.9, "map_": 0.5, "precision": 0.6,
                                     "recall": 0.9}, 230.0)) == 6000
    # through the command line: refused before anything trains, nothing written
    with pytest.raises(SystemExit, match="run `--parts search,recipe`"):
        embedded_default.main(["--parts", "recipe", "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())


def test_parts_default_to_every_part_in_order_and_reject_unknown_ones(tmp_path: Path) -> None:
    assert embedded_default.PARTS == ("train", "scratch", "freeze", "search", "recipe")
    with pytest.raises(SystemExit) as exc:
        embedded_default.main(["--parts", "bogus", "--out", str(tmp_path)])
    assert exc.value.code == 2
