"""The HF side-by-side's verdict compares the winners' seed means by the standard error of
their difference (Welch), on hand-made numbers through the report's own `verdict`."""

from __future__ import annotations

import math

from benchmarks.hf_search import difference_se, render, verdict


def _side(values: list[float], wall: float) -> dict:
    seeds = {str(42 + i): {"map_50": v, "recall": 0.9, "precision": 0.5, "map": 0.4,
                           "missed": 0, "num_gt": 257} for i, v in enumerate(values)}
    return {"seeds": seeds, "test": seeds["42"], "search_wall_s": wall, "retrain_wall_s": 0.0,
            "winner": {}, "steps_trained": 100, "objective": 0.9}


def test_difference_se_is_welchs() -> None:
    a, b = [0.80, 0.82, 0.84], [0.70, 0.74]
    expected = math.sqrt(0.0004 / 3 + 0.0008 / 2)
    assert abs(difference_se(a, b) - expected) < 1e-12


def test_verdict_better_same_or_worse_by_the_standard_error() -> None:
    hf = _side([0.80, 0.81, 0.79, 0.80, 0.80], wall=100.0)
    better = verdict({"ours": _side([0.90, 0.91, 0.89, 0.90, 0.90], 80.0), "hf": hf})
    assert "**met** (wall time 0.80x HF's)" in better[-2]
    same_fast = verdict({"ours": _side([0.80, 0.82, 0.78, 0.80, 0.81], 40.0), "hf": hf})
    assert "within the standard error" in same_fast[-2] and "**met**" in same_fast[-2]
    same_slow = verdict({"ours": _side([0.80, 0.82, 0.78, 0.80, 0.81], 60.0), "hf": hf})
    assert "0.60x" in same_slow[-2] and "**not met**" in same_slow[-2]
    worse = verdict({"ours": _side([0.60, 0.61, 0.59, 0.60, 0.60], 40.0), "hf": hf})
    assert worse[-2].startswith("Criterion: **not met**: HF's winner is better")
    assert "its standard error" in worse[0] and "on 5 seeds (42, 43, 44, 45, 46)" in worse[0]


def test_render_states_the_budget_the_run_recorded() -> None:
    ours, hf = _side([0.8, 0.8], 40.0), _side([0.8, 0.8], 100.0)
    report = {"ours": ours, "hf": hf, "trials": 8, "hf_objective": "eval_map_50 (max)",
              "budget": {"checkpoint": "builtin:tiny-shapes-d-fine", "max_steps": 300,
                         "logging_steps": 50},
              "space": {"iou_loss": {"choice": ["giou"]}}, "score_threshold": 0.75}
    text = render(report)
    assert "`builtin:tiny-shapes-d-fine`), 8 trials each, 300 steps a trial at most, " \
           "evaluation every 50 steps" in text
    assert "(score >= 0.75)" in text and "HF: 8 x 300 = 2,400, plus 300 retraining" in text
