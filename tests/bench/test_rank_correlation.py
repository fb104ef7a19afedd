"""`benchmarks/rank_correlation.py` on a hand-made table: a rung keeps 1 / reduction factor.

Six configurations (one seed, evaluations at steps 10 and 20, every one best at step 20) whose
val `map_50` at step 10 ranks them c0 > c1 > ... > c5 while at step 20, and at the end (test
mAP@.5 there), c5 > c4 > c3 are the best three. A rung at step 10 keeps none of them with
either factor; at step 20 the better half (factor 2: c5, c4, c3) keeps all three, the best
third (factor 3: c5, c4) two of them. The report is read back from disk.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import rank_correlation
from benchmarks.replay import CurveTable

EARLY = [0.50, 0.45, 0.40, 0.35, 0.30, 0.25]   # val map_50 at step 10, c0 best
LATE = [0.60, 0.65, 0.70, 0.75, 0.80, 0.85]    # val (and test) map_50 at step 20, c5 best


def _runs() -> list[dict]:
    return [{"params": {"c": index}, "seed": 0, "steps": [10, 20],
             "val": {"map_50": [EARLY[index], LATE[index]]},
             "test": {"map_50": [EARLY[index], LATE[index]]}} for index in range(6)]


def test_top_kept_follows_the_reduction_factor() -> None:
    table = CurveTable.from_runs(_runs())
    kept = {}
    for factor in (2, 3):
        rows = {r.step: r for r in rank_correlation.rung_rows("t", table, "map_50", factor)
                if r.metric == "map_50"}
        assert rows[10].spearman == -1.0 and rows[20].spearman == 1.0
        kept[factor] = (rows[10].top_kept, rows[20].top_kept)
    assert kept == {2: (0.0, 1.0), 3: (0.0, 2 / 3)}


def test_report_states_the_shipped_factor(tmp_path: Path) -> None:
    data = tmp_path / "curves.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _runs()))
    assert rank_correlation.main(["--tables", str(data), "--out", str(tmp_path)]) == 0
    shipped = rank_correlation.shipped_reduction_factor()
    report = (tmp_path / "rank_correlation.md").read_text()
    assert f"reduction factor {shipped})" in report
    assert json.loads((tmp_path / "rank_correlation.json").read_text())[
        "reduction_factor"] == shipped
