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
    never = Trace(compute=[1000, 2000], regret=[0.3, 0.04])
    found = Trace(compute=[500, 1000], regret=[0.1, 0.0])
    traces = {"asha_tpe": [never, never, found], "grid": [never, found, never]}
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
