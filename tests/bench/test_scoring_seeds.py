"""Scoring seeds: more seeds for some configurations that score a search's choice.

A hand-made table (two learning rates, replayed seeds 0 and 1, evaluations at steps 10 and 20)
gets seeds 2 and 3 for one configuration from a second file. The grid's optimum and noise floor,
a choice's score (every seed of the chosen configuration but the searched one) and the grid
strategy's regret are checked against numbers worked out by hand; a scoring table that does
not fit the replayed one is refused with one line naming its file, key or run, and exit code 2.
The recorder's `points` (a list of configurations instead of a product grid) is read from a
YAML file on disk.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from benchmarks import learning_curves, search_efficiency
from benchmarks.replay import CurveTable, config_key, read_runs
from detr_core.files.errors import UserInputError

STEPS = [10, 20]
LOW, HIGH = {"training_args.learning_rate": 1e-3}, {"training_args.learning_rate": 1e-2}
# test mAP@.5 at steps 10 and 20 by (configuration, seed); val map_50 peaks where test does
TEST = {("low", 0): [0.50, 0.60], ("low", 1): [0.55, 0.70],
        ("high", 0): [0.80, 0.70], ("high", 1): [0.75, 0.90],
        ("high", 2): [0.40, 0.50], ("high", 3): [0.30, 0.60]}


def _run(name: str, seed: int) -> dict[str, Any]:
    test = TEST[(name, seed)]
    return {"params": LOW if name == "low" else HIGH, "seed": seed, "steps": STEPS,
            "val": {"map_50": list(test)}, "test": {"map_50": list(test)}}


def _write(path: Path, runs: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    path.with_name(f"{path.stem}.meta.json").write_text(json.dumps(meta))
    return path


META = {"fixed": {"training_args.logging_steps": 10}, "checkpoint_sha256": "abc",
        "space_file": "search_spaces/iou.yaml", "grid": {"training_args.learning_rate":
                                                         [1e-3, 1e-2]}, "seeds": [0, 1]}


@pytest.fixture
def tables(tmp_path: Path) -> tuple[Path, Path]:
    curves = _write(tmp_path / "curves.jsonl",
                    [_run(n, s) for n in ("low", "high") for s in (0, 1)], META)
    scoring = _write(tmp_path / "more.jsonl", [_run("high", 2), _run("high", 3)],
                     {**META, "grid": None, "points": [HIGH], "seeds": [2, 3]})
    return curves, scoring


def test_scoring_seeds_enter_the_optimum_and_the_score_of_a_choice(
        tables: tuple[Path, Path]) -> None:
    curves, scoring = tables
    plain = search_efficiency.load_table(curves)
    table = search_efficiency.load_table(curves, scoring)
    assert [r["seed"] for r in read_runs(scoring)] == [2, 3]
    high, low = config_key(HIGH), config_key(LOW)
    assert table.seeds == [0, 1] and table.seeds_of(high) == [0, 1, 2, 3]
    assert table.seeds_of(low) == [0, 1] and len(table.curves) == 4
    # each seed's best-val step: high 0.80, 0.90, 0.50, 0.60; low 0.60, 0.70
    facts_plain = search_efficiency.grid_facts(plain, "eval_map_50", "max")
    facts = search_efficiency.grid_facts(table, "eval_map_50", "max")
    assert facts_plain.optimum == pytest.approx(0.85) and facts_plain.optimum_point == high
    assert facts.per_point[high] == pytest.approx(0.70) and facts.optimum_point == high
    assert facts.noise_floor == pytest.approx(statistics.median(
        [statistics.stdev([0.6, 0.7]), statistics.stdev([0.8, 0.9, 0.5, 0.6])]))
    # a search on seed 0 that picked (high, step 20) is scored on seeds 1, 2, 3 at step 20
    others = search_efficiency._other_seeds(table, 0, high)
    assert others == [1, 2, 3]
    assert search_efficiency.quality(table, high, 20, others) == pytest.approx(2.0 / 3)
    assert search_efficiency._other_seeds(table, 0, low) == [1]
    # the grid on seed 0 ends on (high, step 10): scored 0.75, 0.40, 0.30 -> 0.4833
    trace = search_efficiency.grid_trace(table, 0, facts.optimum, "eval_map_50", "max")
    assert trace.final_choice == high
    assert trace.regret[-1] == pytest.approx(0.70 - (0.75 + 0.40 + 0.30) / 3)


def test_a_scoring_table_that_does_not_fit_is_refused(tables: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    curves, _ = tables
    table = CurveTable.from_jsonl(curves)
    unknown = {**_run("high", 2), "params": {"training_args.learning_rate": 5e-3}}
    with pytest.raises(UserInputError, match="not a configuration") as caught:
        table.add_scoring_runs([unknown], "more.jsonl")
    assert caught.value.source == "more.jsonl" and "run 1" in caught.value.key
    with pytest.raises(UserInputError, match="seed 1 is one of the replayed seeds"):
        table.add_scoring_runs([_run("high", 1)], "more.jsonl")
    with pytest.raises(UserInputError, match="other steps"):
        table.add_scoring_runs([{**_run("high", 2), "steps": [10, 30]}], "more.jsonl")
    other = _write(tmp_path / "other.jsonl", [_run("high", 2)],
                   {**META, "fixed": {"training_args.logging_steps": 25}})
    with pytest.raises(UserInputError) as caught:
        search_efficiency.check_scoring_table(curves, other)
    assert caught.value.key == "fixed" and caught.value.source.endswith("other.meta.json")


def test_the_benchmark_exits_2_with_one_line_on_a_scoring_table_that_does_not_fit(
        tables: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    curves, _ = tables
    other = _write(tmp_path / "other.jsonl", [_run("high", 2)],
                   {**META, "checkpoint_sha256": "def"})
    with pytest.raises(SystemExit) as exited:
        search_efficiency.main(["--curves", str(curves), "--scoring-seeds", str(other),
                                "--out", str(tmp_path / "out")])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other.meta.json: checkpoint_sha256" in err[0]
    assert not (tmp_path / "out").exists()


def test_the_recorder_runs_a_list_of_points_from_yaml(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    space = Path(search_efficiency.ROOT / "search_spaces" / "iou.yaml")
    listed = tmp_path / "points.yaml"
    listed.write_text(f"space_file: {space}\nname: more\nseeds: [3, 4]\npoints:\n"
                      "  - {iou_loss: diou, training_args.learning_rate: 0.002}\n"
                      "  - {iou_loss: giou, training_args.learning_rate: 0.004}\n")
    grid = learning_curves.load_grid(listed)
    assert grid["grid"] is None and learning_curves.grid_points(grid) == [
        {"iou_loss": "diou", "training_args.learning_rate": 0.002},
        {"iou_loss": "giou", "training_args.learning_rate": 0.004}]
    both = tmp_path / "both.yaml"
    both.write_text(listed.read_text() + "grid: {iou_loss: [giou]}\n")
    with pytest.raises(SystemExit) as exited:
        learning_curves.main(["--grid", str(both), "--out", str(tmp_path / "data")])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "both.yaml" in err[0] and "`points`" in err[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"space_file: {space}\nseeds: [0]\npoints: [diou]\n")
    with pytest.raises(UserInputError, match="non-empty list of mappings"):
        learning_curves.load_grid(bad)
    assert not (tmp_path / "data").exists()



def test_a_table_of_listed_points_is_counted_by_its_points(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert search_efficiency.planned_runs(
        {"grid": None, "points": [HIGH], "seeds": [2, 3]}) == 2
    assert search_efficiency.planned_runs({"grid": {"a": [1, 2], "b": [3]}, "seeds": [0]}) == 2
    assert search_efficiency.planned_runs({}) == 0
    short = _write(tmp_path / "short.jsonl", [_run("high", 2)],
                   {**META, "grid": None, "points": [HIGH, LOW], "seeds": [2]})
    code = search_efficiency.main(["--curves", str(short), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "1 of 2 grid runs recorded (short.meta.json gives the grid)" in err[0]
    assert not (tmp_path / "out").exists()
