"""The finalists stage's plan, its choice and what the export makes of it, on real files.

The search is the fake experiment of `search_helpers` (six trials in every state, metric
`eval_loss_bbox`, min): its best single run is trial aaaaa_00001 (0.10), then aaaaa_00000
(0.20). The finalists' runs are written the way Ray Tune and the trainable leave them (a trial
folder per configuration x seed under `finalists/`, `params.json` = `{finalist, seed}`,
`result.json`, a checkpoint per report, `test_metrics.json`), so the export is checked
without starting Ray; `tests/scenarios/test_search_finalists.py` runs the stage for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from search_helpers import METRIC, write_fake_experiment, write_fake_weights

from search.results.export import export_experiment
from search.results.finalists import (
    plan_finalists,
    read_finalists,
    read_plan,
    write_plan,
)
from search.results.reading import load_trials
from search.results.report import finalists_table, lead_sentence
from search.space.spec import read_spec_file

TEST = {"map": 0.4, "map_50": 0.6, "map_75": 0.3, "recall": 0.7, "precision": 0.8,
        "iou_mean": 0.6, "missed": 3, "num_gt": 40}


def write_run(experiment: Path, index: int, number: int, seed: int, values: list[float],
              test_map_50: float | None = None, total_steps: int | None = None) -> Path:
    """One finalist run's trial folder: a report (and checkpoint) every 300 steps."""
    folder = experiment / "finalists" / f"train_finalist_f{index:04d}_{index}_finalist={number}"
    folder.mkdir(parents=True)
    total_steps = total_steps or 300 * len(values)  # a finished run by default
    params = {"finalist": number, "seed": seed}
    (folder / "params.json").write_text(json.dumps(params))
    lines = []
    for i, value in enumerate(values):
        step = 300 * (i + 1)
        lines.append(json.dumps({"step": step, "total_steps": total_steps, METRIC: value,
                                 "trial_id": f"f{index:04d}", "time_total_s": 5.0 * (i + 1),
                                 "done": i == len(values) - 1, "config": params}))
        model = folder / f"checkpoint_{i:06d}" / "model"
        model.mkdir(parents=True)
        (model / "config.json").write_text(json.dumps({"model_type": "detr", "run": index,
                                                       "step": step}))
        write_fake_weights(model / "model.safetensors", step)
        (model.parent / "checkpoint_meta.json").write_text(json.dumps(
            {"step": step, "metric": METRIC, "value": value, "model_dir": "model"}))
    (folder / "result.json").write_text("".join(line + "\n" for line in lines))
    if test_map_50 is not None:
        (folder / "test_metrics.json").write_text(json.dumps(TEST | {"map_50": test_map_50}))
    return folder


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    return write_fake_experiment(tmp_path / "results" / "iou")


def planned(experiment: Path, top: int = 2, seeds: int = 2):
    spec = read_spec_file(experiment)
    plan = plan_finalists(spec, load_trials(experiment, spec), top, seeds)
    write_plan(experiment, plan)
    return spec, plan


def test_the_plan_takes_the_best_distinct_clean_configurations_and_fresh_seeds(
        experiment: Path) -> None:
    _spec, plan = planned(experiment, top=3, seeds=2)
    # the errored trial aaaaa_00003 reported the best value of all (0.05) and is left out
    assert [c.source_trial for c in plan.configurations] == [
        "aaaaa_00001", "aaaaa_00000", "aaaaa_00004"]
    assert [c.rank for c in plan.configurations] == [1, 2, 3]  # errored ones rank last
    assert [c.search_value for c in plan.configurations] == [0.10, 0.20, 0.35]
    assert plan.seeds == [4, 5]  # every search trial trained with seed 3
    config = plan.run_config(1, 5)
    assert config["seed"] == 5 and config["iou_loss"] == "ciou"
    assert config["training_args"]["learning_rate"] == 3.2e-4
    assert plan.grid()[:3] == [{"finalist": 1, "seed": 4}, {"finalist": 1, "seed": 5},
                               {"finalist": 2, "seed": 4}]
    assert read_plan(experiment) == plan  # finalists.json round trip


def test_a_configuration_trained_twice_is_one_finalist(tmp_path: Path) -> None:
    from search_helpers import FAKE_TRIALS

    trials = dict(FAKE_TRIALS)
    trials["aaaaa_00006"] = (FAKE_TRIALS["aaaaa_00001"][0], 1200, [(300, 0.12)], False, False,
                             True)  # the winner's configuration again, second best run
    experiment = write_fake_experiment(tmp_path / "iou", trials=trials)
    _, plan = planned(experiment, top=2)
    assert [c.source_trial for c in plan.configurations] == ["aaaaa_00001", "aaaaa_00000"]


def test_the_winner_is_the_best_fresh_mean_not_the_best_search_run_nor_the_best_test(
        experiment: Path) -> None:
    """#1 is the search's best run (0.10) but its fresh runs are worse (0.30, 0.32) than #2's
    (0.15, 0.17): #2 wins, although #1's test mAP@.5 is far higher."""
    spec, _plan = planned(experiment)
    write_run(experiment, 0, 1, 4, [0.35, 0.30], test_map_50=0.95)
    write_run(experiment, 1, 1, 5, [0.32, 0.33], test_map_50=0.93)
    write_run(experiment, 2, 2, 4, [0.20, 0.17], test_map_50=0.50)
    write_run(experiment, 3, 2, 5, [0.15, 0.16], test_map_50=0.52)
    outcome = read_finalists(experiment, spec)
    assert outcome.complete
    assert outcome.winner.configuration.source_trial == "aaaaa_00000"
    assert outcome.winner.values == [0.17, 0.15]  # by seed: each run's best value
    assert outcome.winner_run.seed == 5  # its best run (0.15)
    assert "leads the runner-up #1 by 0.15 in mean" in lead_sentence(outcome, spec)
    assert "larger than the standard error" in lead_sentence(outcome, spec)

    summary = export_experiment(experiment, evaluate_winner=False)
    assert summary.winner.trial_id == "aaaaa_00000"
    best = yaml.safe_load((experiment / "best_config.yaml").read_text())
    assert best["seed"] == 5 and best["iou_loss"] == "giou"
    header = (experiment / "best_config.yaml").read_text().splitlines()[:3]
    assert "configuration #2 (trial aaaaa_00000, rank 2 of the search)" in header[1]
    assert "seed 5" in header[2]
    source = json.loads((experiment / "best_model" / "export_source.json").read_text())
    assert source["checkpoint"].startswith("finalists/train_finalist_f0003_3_")
    assert source["step"] == 300
    assert json.loads((experiment / "test_metrics.json").read_text())["map_50"] == 0.52
    report = (experiment / "REPORT.md").read_text()
    section = report[report.index("## Finalists"):report.index("## Winner")]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert "**#2: trial `aaaaa_00000` (search rank 2), winner**" in rows[2]
    assert "| 0.2 | 2 of 2 | 0.16 ± 0.01414 | 0.51 ± 0.01414 |" in rows[2]
    assert rows[3].startswith("| #1: trial `aaaaa_00001` (search rank 1) |")
    assert "chosen by its mean `eval_loss_bbox` 0.16 over 2 fresh seeds" in report
    assert "finalists:   configuration #2 (trial aaaaa_00000) won" in summary.describe()


def test_the_seeds_cannot_tell_two_close_configurations_apart(experiment: Path) -> None:
    spec, _ = planned(experiment)
    write_run(experiment, 0, 1, 4, [0.20])
    write_run(experiment, 1, 1, 5, [0.30])
    write_run(experiment, 2, 2, 4, [0.24])
    write_run(experiment, 3, 2, 5, [0.27])
    sentence = lead_sentence(read_finalists(experiment, spec), spec)
    assert "within the standard error of that difference" in sentence
    assert "2 seeds do not tell them apart" in sentence


def test_an_unfinished_stage_chooses_nothing_and_says_so(experiment: Path) -> None:
    spec, _ = planned(experiment)
    write_run(experiment, 0, 1, 4, [0.35, 0.30])
    write_run(experiment, 1, 2, 4, [0.20], total_steps=600)  # still at step 300 of 600
    (experiment / "finalists" / "train_finalist_f0001_1_finalist=2" / "result.json").write_text(
        json.dumps({"step": 300, "total_steps": 600, METRIC: 0.2, "done": False}) + "\n")
    outcome = read_finalists(experiment, spec)
    assert not outcome.complete and outcome.winner is None
    summary = export_experiment(experiment, evaluate_winner=False)
    assert summary.winner.trial_id == "aaaaa_00001"  # still the search's best run
    best = yaml.safe_load((experiment / "best_config.yaml").read_text())
    assert best["seed"] == 3
    report = (experiment / "REPORT.md").read_text()
    assert "The stage has not finished: 1 of 4 run(s) ended" in report


def test_an_errored_run_is_left_out_of_its_mean(experiment: Path) -> None:
    spec, _ = planned(experiment)
    write_run(experiment, 0, 1, 4, [0.18])
    errored = write_run(experiment, 1, 1, 5, [0.01])
    (errored / "result.json").write_text(
        json.dumps({"step": 300, "total_steps": 600, METRIC: 0.01, "done": False}) + "\n")
    (errored / "error.txt").write_text("RuntimeError: boom\n")
    write_run(experiment, 2, 2, 4, [0.20])
    write_run(experiment, 3, 2, 5, [0.22])
    outcome = read_finalists(experiment, spec)
    assert outcome.complete
    assert outcome.winner.configuration.number == 1  # 0.18 over its one finished run
    assert "| 1 of 2, 1 errored |" in finalists_table(outcome, spec)


def test_a_stage_is_planned_anew_when_the_search_gained_a_better_trial(tmp_path: Path,
                                                                      capsys) -> None:
    """A resumed stage keeps its plan; after a top-up whose new trial ranks among the top K,
    the old stage is stale: removed and planned again (search.running.finalists.the_plan)."""
    from search_helpers import FAKE_TRIALS, fake_params, write_fake_trial

    from search.running.finalists import the_plan
    from search.space.spec import FinalistsSpec

    experiment = write_fake_experiment(tmp_path / "iou")
    spec = read_spec_file(experiment)
    spec.finalists = FinalistsSpec(top=2, seeds=2)
    first = the_plan(experiment, spec, load_trials(experiment, spec))
    write_run(experiment, 0, 1, 4, [0.3])
    assert the_plan(experiment, spec, load_trials(experiment, spec)) == first  # resumed: kept
    assert (experiment / "finalists").is_dir()

    write_fake_trial(experiment, len(FAKE_TRIALS), "aaaaa_00006",
                     (fake_params("diou", False, 7e-4, 0.0, 4), 1200,
                      [(300, 0.12), (600, 0.08)], False, False, True))  # the new best run
    again = the_plan(experiment, spec, load_trials(experiment, spec))
    assert [c.source_trial for c in again.configurations] == ["aaaaa_00006", "aaaaa_00001"]
    assert read_plan(experiment) == again
    assert not (experiment / "finalists").exists()  # the stale runs are gone
    assert "planning it anew" in capsys.readouterr().out
