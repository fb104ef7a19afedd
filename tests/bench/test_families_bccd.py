"""`benchmarks/families_bccd.py` and its part (c), `benchmarks/bccd_search.py`, without training:
the resume skip, the report from a hand-made jsonl, the run config, the BCCD space written from
an architecture space, and a finished search read back from a hand-made results folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bccd_search
from benchmarks import families_bccd as bench
from detr_core.config.run_config import run_config_from_dict


def record(name: str, map_50: float, per_class: dict[str, float] | None = None) -> dict[str, Any]:
    """A finished run as `train_one` records it."""
    _, part, family, _ = next(r for r in bench.RUNS if r[0] == name)
    return {"run": name, "part": part, "family": family, "image_size": 320, "steps": 600,
            "num_queries": 60, "parameters": 967_765, "best_step": 500,
            "best_val_map_50": map_50 + 0.01,
            "val_curve": [{"step": 100, "eval_map_50": map_50 / 2},
                          {"step": 500, "eval_map_50": map_50 + 0.01}],
            "test": {"map_50": map_50, "map": map_50 / 3, "recall": 0.5,
                     "precision": float("nan"),
                     "per_class_ap": per_class or {"RBC": 0.4, "WBC": 0.3, "Platelets": 0.1}},
            "steps_per_s": 1.75, "wall_s": 420.0, "commit": "abc1234"}


def test_a_recorded_run_is_skipped_on_the_next_call(tmp_path: Path) -> None:
    data = tmp_path / "runs.jsonl"
    names = [r[0] for r in bench.RUNS]
    assert bench.pending_runs(bench.read_runs(data), names) == names  # no file yet
    bench.append_run(record("tiny:d_fine", 0.2), data)
    bench.append_run(record("builtin:tiny-shapes", 0.3), data)
    left = bench.pending_runs(bench.read_runs(data), names)
    assert left == [n for n in names if n not in ("tiny:d_fine", "builtin:tiny-shapes")]


def test_main_trains_only_what_is_missing_and_skips_an_unshipped_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "DATA_FILE", tmp_path / "runs.jsonl")
    monkeypatch.setattr(bench, "SPEED_FILE", tmp_path / "speed.json")
    monkeypatch.setattr(bench, "REPORT", tmp_path / "report.md")
    monkeypatch.setattr(bench, "available", lambda model: "checkpoint" not in model)
    trained: list[list[str]] = []
    monkeypatch.setattr(bench, "train_all", lambda names, *rest: trained.append(names))
    bench.append_run(record("tiny:detr", 0.1), tmp_path / "runs.jsonl")
    assert bench.main(["--runs", "tiny:detr", "tiny:d_fine", "builtin:tiny-shapes"]) == 0
    assert trained == [["tiny:d_fine"]]
    assert "builtin:tiny-shapes: not in detr_core/builtin/ yet, skipped" in capsys.readouterr().out
    assert "| b | `tiny:detr` | DETR |" in (tmp_path / "report.md").read_text()


def test_report_from_a_jsonl(tmp_path: Path) -> None:
    data = tmp_path / "runs.jsonl"
    bench.append_run(record("builtin:tiny-shapes-d-fine", 0.5,
                            {"RBC": 0.61, "WBC": 0.52, "Platelets": 0.07}), data)
    bench.append_run(record("tiny:d_fine", 0.2), data)
    speed = {"320": {"load_1min": 1.02, "detr": 4.0, "d_fine": 2.0, "deformable_detr": 2.0}}
    text = bench.write_report(bench.read_runs(data), speed, None)
    assert "**320 px**" in text and "60 queries" in text
    row = next(line for line in text.splitlines()
               if line.startswith("| a | `builtin:tiny-shapes-d-fine`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4:13] == ["500", "0.510", "0.500", "0.167", "0.500", "n/a", "0.610", "0.520",
                           "0.070"]  # best step, val, test metrics (NaN: n/a), per-class AP
    table = [line for line in text.splitlines() if line.startswith(("| part", "| a ", "| b "))]
    assert len(table) == 1 + len(bench.RUNS)
    assert len({line.count("|") for line in table}) == 1  # "not run yet" rows fill every column
    assert "| D-FINE | 0.500 | 0.200 | +0.300 |" in text  # pretraining's gain, one family
    assert "| DETR | 4.00 |" in text and "| load average when timed (2 cores) | 1.0 |" in text
    # 2 runs a family x 600 steps at 4, 2 and 2 steps/s
    assert bench.budget_estimate(speed) == pytest.approx(2 * 600 * (1 / 4 + 1 / 2 + 1 / 2))
    assert "| `tiny:d_fine` | 0.100 | 0.210 |" in text  # val curve at steps 100, 500
    assert "Not run yet: `python benchmarks/families_bccd.py --search`" in text


def test_run_config_is_a_valid_run_on_three_coco_splits(tmp_path: Path) -> None:
    raw = bench.run_config({"checkpoint": "builtin:tiny-shapes"}, tmp_path, image_size=256)
    assert raw["data"]["val"]["images"] == str(tmp_path / "valid")
    assert raw["data"]["test"]["annotations"] == str(tmp_path / "test" / "_annotations.coco.json")
    assert raw["model"]["config_overrides"]["num_queries"] > 30  # BCCD: up to 30 an image
    assert raw["augmentation"]["train"][0] == {"LongestMaxSize": {"max_size": 256}}
    config = run_config_from_dict(raw)
    assert config.model.image_size == 256 and config.training_args["max_steps"] == bench.STEPS


ARCH = {"experiment": {"name": "architecture", "num_samples": 12,
                       "scheduler": {"grace_period": 150, "reduction_factor": 3, "max_t": 450}},
        "base": "runs/base.yaml",
        "base_overrides": {"training_args.max_steps": 450, "model.image_size": 96},
        "space": {"model.checkpoint": {"choice": ["builtin:tiny-shapes"]},
                  "iou_loss": {"choice": ["giou", "ciou"]}}}


def test_bccd_space_keeps_the_architecture_search_and_puts_bccd_over_its_base(
        tmp_path: Path) -> None:
    run = bench.run_config({"checkpoint": "builtin:tiny-shapes"}, tmp_path / "bccd")
    space = bccd_search.bccd_space(ARCH, tmp_path / "spaces", run)
    assert list(space) == ["experiment", "base", "base_overrides", "space"]
    assert space["experiment"] == ARCH["experiment"] and space["space"] == ARCH["space"]
    assert space["base"] == str(tmp_path / "spaces" / "runs" / "base.yaml")
    overrides = space["base_overrides"]
    assert overrides["training_args.max_steps"] == 450  # the architecture's budget
    assert overrides["model.image_size"] == bench.IMAGE_SIZE  # BCCD's wins
    assert overrides["model.config_overrides.num_queries"] == bench.NUM_QUERIES
    assert overrides["data"] == run["data"]

    out = tmp_path / "out" / "bccd.yaml"
    (tmp_path / "arch.yaml").write_text(json.dumps(ARCH))  # JSON is YAML
    assert bccd_search.write_space(run, tmp_path / "missing.yaml", out) is None
    bccd_search.write_space(run, tmp_path / "arch.yaml", out)
    text = out.read_text()
    assert "images: ../bccd/valid" in text  # relative to the space file, as run.py reads it
    assert text.startswith("# Written by benchmarks/families_bccd.py --search")


def test_a_finished_search_is_read_back(tmp_path: Path) -> None:
    folder = tmp_path / bccd_search.SEARCH_NAME
    assert bccd_search.read_search(folder) is None
    assert bccd_search.search_section(None) is None
    folder.mkdir()
    (folder / "best_config.yaml").write_text(
        "iou_loss: ciou\nbackbone_lr_ratio: 0.05\nmodel: {checkpoint: builtin:tiny-shapes-d-fine}"
        "\ntraining_args: {learning_rate: 0.0003}\n")
    (folder / "test_metrics.json").write_text(json.dumps(
        {"map_50": 0.71, "map": 0.4, "recall": 0.8, "precision": None,
         "per_class_ap": {"RBC": 0.5, "WBC": 0.6, "Platelets": 0.2}}))
    (folder / "trials.csv").write_text(
        "trial_id,status,model.checkpoint,iou_loss,best_eval_map_50,best_step,last_step,"
        "wall_time_s,error,origin,source_experiment\n"
        "t1,completed,builtin:tiny-shapes-d-fine,ciou,0.7,450,450,300.0,,search,\n"
        "t2,stopped by ASHA at step 150,builtin:tiny-shapes,giou,0.3,150,150,60.0,,search,\n"
        "t3,completed,builtin:tiny-shapes-d-fine,giou,0.6,400,450,280.0,,search,\n")
    summary = bccd_search.read_search(folder)
    assert summary is not None
    assert summary["winner"] == {"checkpoint": "builtin:tiny-shapes-d-fine",
                                 "learning_rate": 0.0003, "iou_loss": "ciou",
                                 "backbone_lr_ratio": 0.05}
    text = bccd_search.search_section(summary)
    assert text is not None
    assert "Winner: `builtin:tiny-shapes-d-fine`, lr 0.0003, ciou" in text
    assert "per-class AP RBC 0.500, WBC 0.600, Platelets 0.200" in text
    assert "precision n/a" in text
    assert "Compute: 3 trials, 1,050 optimizer steps, 0.18 trial-hours" in text
    assert "| `builtin:tiny-shapes-d-fine` | 2 | 900 | 2 completed |" in text
    assert "| `builtin:tiny-shapes` | 1 | 150 | 1 stopped by ASHA at step 150 |" in text
