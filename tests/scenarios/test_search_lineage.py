"""Searches that build on each other, for real (Ray, Tune, Optuna, ASHA; `search/run.py`'s
`main` in this process, on the tiny synthetic data: signals and leftover processes are
`test_search_interrupts.py`'s): a first search `first`; a second one warm-started from
it (its trials in the study and in trials.csv, not trained again, not counted toward
--num-samples); the first continued after it finished with `--resume --num-samples` (the
study and every trial kept, new trials proposed by TPE from all of them, the report rebuilt
over all); then `search/export.py --compare` over the sequence, and a `--resume` with nothing
to add (both in-process: neither starts Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
from search_helpers import (
    load_study,
    output_tail,
    ray_scope,
    read_trials_csv,
    run_main_in_process,
    session_cache,
    trial_dirs,
    write_space,
)

from search.export import main as export_main
from search.run import main as run_main

pytestmark = pytest.mark.slow

SPACE = {"training_args.learning_rate": {"loguniform": [1.0e-5, 3.0e-3]}}
NARROW = {"training_args.learning_rate": {"loguniform": [1.0e-4, 3.0e-3]}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """first (2 trials) -> second (--warm-start first, 1 trial) -> first resumed to 3 trials."""
    root = tmp_path_factory.mktemp("lineage")
    cache = session_cache(tmp_path_factory)
    storage = root / "results"
    first = write_space(root / "first.yaml", "first", SPACE, num_samples=2, max_concurrent=2,
                        grace_period=8, max_t=8, epochs=2, logging_steps=4)
    second = write_space(root / "second.yaml", "second", NARROW, num_samples=1,
                         grace_period=8, max_t=8, epochs=2, logging_steps=4)
    common = ["--storage", storage, "--no-dashboard"]
    done = {}
    with ray_scope(cache) as scope:
        done["first"] = run_main_in_process(run_main, ["--space", first, *common], scope.env)
        done["second"] = run_main_in_process(run_main, ["--space", second, *common,
                                                        "--warm-start", storage / "first"],
                                             scope.env)
        # the warm-start plan of the second search, read before the first grows
        done["second_csv"] = read_trials_csv(storage / "second")
        done["more"] = run_main_in_process(run_main, ["--space", first, *common, "--name",
                                                      "first", "--resume", "--num-samples", "3"],
                                           scope.env)
        scope.assert_no_leftovers()
    done["storage"], done["cache"] = storage, cache
    return done


def test_the_warm_started_search_trains_only_its_own_trials_and_ranks_all(runs: dict) -> None:
    for key in ("first", "second"):
        assert runs[key].returncode == 0, output_tail(runs[key])
    second = runs["storage"] / "second"
    out = runs["second"].stdout
    assert "Warm start (2 trial(s) of earlier searches, not trained again):" in out
    assert "(first): 2 of 2 trial(s) taken" in out
    assert "0 random startup trials (2 warm-start trial(s) count toward 1)" in out
    assert len(trial_dirs(second)) == 1  # num_samples 1: the warm-start trials not counted
    rows = runs["second_csv"]
    assert sorted(r["origin"] for r in rows) == ["search", "warm-start", "warm-start"]
    assert {r["source_experiment"] for r in rows if r["origin"] == "warm-start"} == {
        str(runs["storage"] / "first")}
    study = load_study(second, "second")
    warm = [t for t in study.trials if "warm_start_source" in t.user_attrs]
    assert len(warm) == 2 and all(t.state.name == "COMPLETE" for t in warm)
    assert all(set(t.intermediate_values) == {4, 8} for t in warm)
    assert len(study.trials) == 3
    assert "## Warm start" in (second / "REPORT.md").read_text()


def test_a_finished_search_continues_with_more_trials(runs: dict) -> None:
    assert runs["more"].returncode == 0, output_tail(runs["more"])
    first = runs["storage"] / "first"
    assert "continuing first: 2 trial(s) kept, 1 more proposed by TPE from all of them" in \
        runs["more"].stdout
    assert len(trial_dirs(first)) == 3
    study = load_study(first, "first")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    rows = read_trials_csv(first)
    assert len(rows) == 3 and all(r["status"] == "completed" for r in rows)
    assert "- Trials: 3 (3 completed)" in (first / "REPORT.md").read_text()


def test_compare_tables_the_sequence(runs: dict) -> None:
    storage = runs["storage"]
    assert export_main(["--compare", str(storage / "first"), str(storage / "second")]) == 0
    report = (runs["storage"] / "COMPARE.md").read_text()
    assert "| 1 | `" in report and "| 2 | `" in report
    assert "1 + 2 warm-start" in report
    assert (runs["storage"] / "compare_plots" / "best_so_far.png").is_file()


def test_nothing_to_continue_is_said_and_the_search_is_exported_again(
        runs: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert runs["more"].returncode == 0
    storage = runs["storage"]
    monkeypatch.setenv("DETR_SEARCH_CACHE", str(runs["cache"]))
    space = write_space(tmp_path / "first.yaml", "first", SPACE, num_samples=3,
                        grace_period=8, max_t=8, epochs=2, logging_steps=4)
    before = (storage / "first" / "REPORT.md").stat().st_mtime_ns
    assert run_main(["--space", str(space), "--storage", str(storage), "--no-dashboard",
                     "--name", "first", "--resume"]) == 0
    assert "first holds 3 trial(s) and asks for 3: nothing to run" in capsys.readouterr().out
    assert len(trial_dirs(storage / "first")) == 3
    assert (storage / "first" / "REPORT.md").stat().st_mtime_ns > before
