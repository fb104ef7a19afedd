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
