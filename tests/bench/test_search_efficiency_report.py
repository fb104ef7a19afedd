"""The search-efficiency report says by how much a target was missed and what limits it.

Built from a small grid of hand-made numbers through `summarise` and `limits`, the functions
the benchmark's report uses (no replay: those are tested in test_benchmarks_replay.py).
"""

from __future__ import annotations

from benchmarks.search_efficiency import GridFacts, Trace, limits, summarise


def test_limits_name_the_miss_the_physical_and_the_noise_limit() -> None:
    # four configurations; the optimum leads the next by 0.04, one run's spread is 0.025
    facts = GridFacts(optimum=0.80, optimum_point="a", noise_floor=0.025, grid_steps=4000,
                      per_point={"a": 0.80, "b": 0.76, "c": 0.70, "d": 0.50})
    never = Trace(compute=[1000, 2000], regret=[0.3, 0.04], final_choice="b",
                  trained=["c", "b"])
    missed = Trace(compute=[1000, 2000], regret=[0.3, 0.04], final_choice="b",
                   trained=["a", "b"])  # trained the optimum, chose another
    found = Trace(compute=[500, 1000], regret=[0.1, 0.0], final_choice="a", trained=["d", "a"])
    traces = {"asha_tpe": [never, missed, found], "grid": [never, found, never]}
    summary = summarise(traces, facts, num_samples=2)
    assert summary["points_within_floor"] == 1
    assert abs(summary["runner_up_gap"] - 0.04) < 1e-12
    lines = limits(summary)
    assert lines[0].startswith("- Missed by: 1 more of 3 seeds")
    assert "one full training is 1/4 = 25.0%" in lines[1] and "2 trials at full budget 50.0%" \
        in lines[1]
    assert lines[2] == ("- Noise limit: 1 of 4 configurations are within the floor (the optimum "
                        "leads the next by 0.0400, one run's spread is 0.0250); the grid itself, "
                        "every configuration trained once, picks one on 1 of 3 curve seeds: a "
                        "search that sees one seed per configuration cannot tell them apart "
                        "reliably at any compute.")
    ours = summary["strategies"]["asha_tpe"]
    assert (ours["trained_one_within_floor"], ours["ended_on_one_within_floor"]) == (2, 1)
    assert lines[3] == ("- Sampling or selection: (a) trained a configuration within the floor "
                        "in 2 of 3 searches and ended on one in 1 (scored on the held-out seeds, "
                        "1 got within the floor).")


def test_searcher_limit_counts_the_seeds_stock_optuna_followed_the_same_trace() -> None:
    facts = GridFacts(optimum=0.80, optimum_point="a", noise_floor=0.025, grid_steps=4000,
                      per_point={"a": 0.80, "b": 0.76})
    ours = [Trace(compute=[500, 1000], regret=[0.1, 0.0]), Trace(compute=[500], regret=[0.2])]
    stock = [Trace(compute=[500, 1000], regret=[0.1, 0.0]), Trace(compute=[500], regret=[0.1])]
    random = [Trace(compute=[700], regret=[0.3]), Trace(compute=[500], regret=[0.2])]
    summary = summarise({"asha_tpe": ours, "stock_optuna_asha": stock, "random_fifo": random},
                        facts, num_samples=16)
    assert summary["strategies"]["stock_optuna_asha"]["same_trace_as_asha_tpe"] == 1
    assert summary["strategies"]["random_fifo"]["same_trace_as_asha_tpe"] == 1
    assert "same_trace_as_asha_tpe" not in summary["strategies"]["asha_tpe"]
    searcher = [line for line in limits(summary) if line.startswith("- Searcher limit")]
    assert searcher and searcher[0].startswith(
        "- Searcher limit: (b) followed (a)'s trace exactly on 1 of 2 seeds.")
    assert "(1-2 of 16)" in searcher[0]


def test_regret_is_summarised_as_an_interquartile_mean_with_a_bootstrap_interval() -> None:
    from benchmarks.search_efficiency import iqm, iqm_with_ci, regret_at, regret_table

    # eight searches: the two best and two worst are cut, the middle four averaged
    values = [0.0, 0.0, 0.01, 0.02, 0.03, 0.04, 0.30, 0.50]
    assert abs(iqm(values) - 0.025) < 1e-12
    assert iqm([0.2]) == 0.2
    ci = iqm_with_ci(values)
    assert ci["low"] <= ci["iqm"] <= ci["high"] and ci["high"] < 0.30  # outliers stay out
    assert iqm_with_ci(values) == ci  # a fixed resampling seed
    flat = iqm_with_ci([0.1] * 5)
    assert all(abs(v - 0.1) < 1e-12 for v in flat.values())

    trace = Trace(compute=[1000, 3000], regret=[0.2, 0.05], final_choice="a")
    assert regret_at(trace, 0.05, 10_000) is None  # nothing handed over before 1,000 steps
    assert regret_at(trace, 0.10, 10_000) == 0.2
    assert regret_at(trace, 0.30, 10_000) == 0.05

    facts = GridFacts(optimum=0.8, optimum_point="a", noise_floor=0.02, grid_steps=10_000,
                      per_point={"a": 0.8, "b": 0.7})
    late = Trace(compute=[2000, 2200], regret=[0.1, 0.1], final_choice="b")
    summary = summarise({"asha_tpe": [trace, trace, late]}, facts, num_samples=2)
    regret = summary["strategies"]["asha_tpe"]["regret"]
    assert abs(regret["final"]["iqm"] - 0.2 / 3) < 1e-12  # 3 searches: nothing cut
    assert regret["at_0.1"] == {"handed_over": 2}  # `late` had chosen nothing by 10 %
    # by 22 %: `trace` still on its first choice (0.2) twice, `late` on its 0.1
    assert abs(regret["at_0.22"]["iqm"] - 0.5 / 3) < 1e-12
    table = "\n".join(regret_table(summary))
    assert "| (a) asha_tpe | 0.0667 [" in table and "| 2 of 3 had chosen |" in table


def _run(key: str, seed: int, val: list[float], test: list[float]) -> dict:
    return {"params": {"lr": key}, "seed": seed, "steps": [250, 500],
            "val": {"map_50": val}, "test": {"map_50": test}}


def test_replayed_finalists_choose_by_the_mean_of_unseen_seeds_and_score_on_the_rest() -> None:
    """A hand-made case: the search's best single run ('b', lucky on seed 0) loses the
    finalists stage to 'a', whose fresh seeds 1 and 2 are better on average; the choice is
    scored on the seeds nobody trained (3), the exported step is the best run's best step,
    and the stage adds top x seeds x max_t steps."""
    from types import SimpleNamespace

    from benchmarks.replay import CurveTable, config_key
    from benchmarks.search_efficiency import (
        StrategyName,
        finalist_scoring_seeds,
        with_finalists,
    )

    runs = [
        _run("a", 0, [0.60, 0.70], [0.6, 0.7]), _run("b", 0, [0.80, 0.90], [0.5, 0.5]),
        _run("c", 0, [0.50, 0.55], [0.1, 0.1]),
        _run("a", 1, [0.70, 0.85], [0.7, 0.8]), _run("b", 1, [0.60, 0.65], [0.5, 0.5]),
        _run("c", 1, [0.95, 0.20], [0.1, 0.1]),
        _run("a", 2, [0.88, 0.80], [0.7, 0.8]), _run("b", 2, [0.70, 0.60], [0.5, 0.5]),
        _run("c", 2, [0.30, 0.30], [0.1, 0.1]),
    ]
    table = CurveTable.from_runs(runs)
    table.add_scoring_runs([_run("a", 3, [0.0, 0.0], [0.75, 0.66])], "scoring.jsonl")
    a, b, c = (config_key({"lr": x}) for x in "abc")
    reports = [SimpleNamespace(grid_point=b, value=0.90), SimpleNamespace(grid_point=a,
                                                                          value=0.70),
               SimpleNamespace(grid_point=c, value=0.55)]
    search = Trace(compute=[500, 1000], regret=[0.3, 0.2], final_choice=b, trained=[b, a, c])
    trace = with_finalists(table, search, reports, search_seed=0, optimum=0.80,
                           metric="eval_map_50", mode="max", top=2, seeds=2, every=None,
                           max_t=500)
    assert trace.final_choice == a  # mean of best val 0.865 (0.85, 0.88) beats b's 0.70
    assert trace.compute == [500, 1000, 1000 + 2 * 2 * 500]
    # best run of 'a' is seed 2 (0.88 at step 250): scored at step 250 on seed 3 only
    assert abs(trace.regret[-1] - (0.80 - 0.75)) < 1e-12 and trace.scored_on_seen == 0
    # 'c' (one lucky early value on seed 1) never enters: the top 2 are b and a by search value
    assert finalist_scoring_seeds(table, b, [0, 1, 2]) == [1, 2]  # nothing unseen: all but 0
    assert StrategyName.parse("asha_tpe+n24+f3x2") == StrategyName("asha_tpe", 24, 3, 2)


def test_a_misspelt_strategy_variant_is_one_clear_error() -> None:
    import pytest

    from benchmarks.search_efficiency import StrategyName
    from detr_core.files.errors import UserInputError

    for bad, words in (("asha_tpe+g3", "+g3"), ("asha_tpe+f3", "+f3"), ("nope+f1x1", "'nope'"),
                       ("asha_tpe+f0x2", ">= 1")):
        with pytest.raises(UserInputError, match=words.replace("+", r"\+")):
            StrategyName.parse(bad)


def test_targets_against_random_fifo_are_read_at_its_compute_and_reached_exactly() -> None:
    from benchmarks.search_efficiency import compute_to_reach, versus_random_fifo, versus_text

    grid = 1000
    fifo = [Trace(compute=[100, 200], regret=[0.10, 0.04]) for _ in range(4)]
    ours = [Trace(compute=[50, 80, 150], regret=[0.09, 0.03, 0.01]) for _ in range(4)]
    assert compute_to_reach(ours, 0.04, grid) == 0.08  # the choice at 80 steps is 0.03
    assert compute_to_reach(ours, 0.001, grid) is None
    versus = versus_random_fifo({"random_fifo": fifo, "asha_tpe": ours}, grid)
    row = versus["strategies"]["asha_tpe"]
    assert versus["budget"] == 0.2 and abs(row["ratio"] - 0.01 / 0.04) < 1e-12
    assert row["intervals_apart"] and abs(row["reach_ratio"] - 0.4) < 1e-12
    text = "\n".join(versus_text(versus))
    assert "| (a) asha_tpe | 0.0100 [0.0100, 0.0100] | 0.250x | yes | 8.0% | 0.40x |" in text
