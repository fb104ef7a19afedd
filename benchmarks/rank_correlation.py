"""Which evaluation at an early step predicts how a configuration ends: the ASHA rung question.

    python benchmarks/rank_correlation.py                         # the recorded tables
    python benchmarks/rank_correlation.py --tables benchmarks/data/learning_curves_v2.jsonl

ASHA keeps, at each rung, the configurations that look best there; it pays only when the rung
metric ranks them the way the end does. For every recorded learning-curve table
(`benchmarks/learning_curves.py`), every candidate rung metric (raw `loss_bbox` and `map_50`,
the averaged weights' `ema_map_50`, ...; a schedule-free table is its own candidate: its
anytime iterate is what it evaluates) and every evaluated step, this reports

- Spearman's rank correlation between a configuration's mean (over seeds) validation metric at
  that step and its *final* test mAP@.5, and
- the share of the three configurations that end best which a rung at that step would keep
  with the shipped reduction factor (`--reduction-factor`, default search_spaces/iou.yaml's:
  3 keeps the best third by the rung metric).

"Final" is what a finished search would export: the test mAP@.5 of the step with the best
validation value of the objective the table is ranked by (`--final-metric`, default val
`map_50`, the raw weights; `ema_map_50` scores averaged-weight exports), mean over seeds. Only
configurations recorded for every seed of a table count. Written to
`results/benchmarks/rank_correlation.{md,json}`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.replay import CurveTable, config_key, read_meta  # noqa: E402
from detr_core.config.metric_names import natural_mode  # noqa: E402

DATA = ROOT / "benchmarks" / "data"
DEFAULT_TABLES = (DATA / "learning_curves.jsonl", DATA / "learning_curves_v2.jsonl",
                  DATA / "learning_curves_schedule_free.jsonl")
#: Rung metrics compared (val split, bare names); a table lacking one skips it.
CANDIDATES = ("loss_bbox", "loss", "map_50", "map", "recall", "ema_loss_bbox", "ema_map_50",
              "ema_map")
SHIPPED_SPACE = ROOT / "search_spaces" / "iou.yaml"
TOP = 3


def shipped_reduction_factor(space: Path = SHIPPED_SPACE) -> int:
    """ASHA's reduction factor in the shipped space: a rung keeps 1 / factor of its trials."""
    from search.space.spec import load_search_spec

    return int(load_search_spec(space).scheduler.reduction_factor)


@dataclass(frozen=True)
class Row:
    """One (table, rung metric, step): how well the rung ranks the configurations."""

    table: str
    metric: str
    step: int
    spearman: float
    top_kept: float  # share of the TOP final configs in the kept half


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rho (average ranks for ties), NaN for fewer than 3 pairs."""
    from scipy.stats import spearmanr

    if len(xs) < 3:
        return math.nan
    return float(spearmanr(xs, ys).statistic)


def mean_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(present) if len(present) == len(values) and present else None


def final_quality(table: CurveTable, key: str, final_metric: str) -> float | None:
    """Mean over seeds of test mAP@.5 at the step with the best val `final_metric`."""
    from detr_core.config.metric_names import is_better

    mode = natural_mode(final_metric)
    test_metric = "ema_map_50" if final_metric.startswith("ema_") else "map_50"
    values = []
    for seed in table.seeds:
        curve = table.curves[(key, seed)]
        best_index = None
        for index, value in enumerate(curve.val.get(final_metric, ())):
            best = None if best_index is None else curve.val[final_metric][best_index]
            if is_better(value, best, mode):
                best_index = index
        if best_index is None or test_metric not in curve.test:
            return None
        values.append(curve.test[test_metric][best_index])
    return mean_or_none(values)


def rung_rows(name: str, table: CurveTable, final_metric: str,
              reduction_factor: int = 2) -> list[Row]:
    """Every candidate rung metric at every step of one table; a rung keeps the best
    1 / `reduction_factor` of the configurations (at least one)."""
    keys = [config_key(p) for p in table.complete_points()]
    finals = {k: final_quality(table, k, final_metric) for k in keys}
    keys = [k for k in keys if finals[k] is not None]
    if len(keys) < 3:
        return []
    top = set(sorted(keys, key=lambda k: finals[k], reverse=True)[:TOP])
    first = table.curves[(keys[0], table.seeds[0])]
    rows = []
    for metric in CANDIDATES:
        if metric not in first.val:
            continue
        sign = 1.0 if natural_mode(metric) == "max" else -1.0
        for index, step in enumerate(first.steps):
            scores = {k: mean_or_none([table.curves[(k, s)].val[metric][index]
                                       for s in table.seeds]) for k in keys}
            ranked = [k for k in keys if scores[k] is not None]
            if len(ranked) < 3:
                continue
            rho = spearman([sign * scores[k] for k in ranked], [finals[k] for k in ranked])
            kept = sorted(ranked, key=lambda k: sign * scores[k], reverse=True)[
                :max(1, math.ceil(len(ranked) / reduction_factor))]
            rows.append(Row(name, metric, step, rho, len(top & set(kept)) / len(top)))
    return rows


def only_seeds(table: CurveTable, seeds: Sequence[int]) -> CurveTable:
    """The table's curves of `seeds` only (those it has)."""
    kept = [s for s in table.seeds if s in seeds]
    return CurveTable({k: c for k, c in table.curves.items() if k[1] in kept}, table.grid, kept,
                      table.points)


def only_configs(table: CurveTable, keys: set[str]) -> CurveTable:
    """The table's curves of the configurations `keys` only."""
    return CurveTable({k: c for k, c in table.curves.items() if k[0] in keys}, table.grid,
                      table.seeds, [p for p in table.points if config_key(p) in keys])


def render(tables: dict[str, dict[str, Any]], rows: Sequence[Row], final_metric: str,
           argv: Sequence[str], reduction_factor: int) -> str:
    lines = [
        "# Rank correlation: does an early evaluation predict the end?",
        "",
        f"`python benchmarks/rank_correlation.py {' '.join(argv)}`".replace(" `", "`"),
        "",
        "Per table, rung metric (val split, mean over seeds) and step: Spearman's rho with the "
        f"configuration's final test mAP@.5 (at its best val `{final_metric}` step, mean over "
        f"seeds; sign turned so that 1 is a perfect ranking for losses too), and the share of "
        f"the {TOP} configurations that end best which a rung there would keep (the best "
        f"1/{reduction_factor}, reduction factor {reduction_factor}).",
        "",
    ]
    for name, info in tables.items():
        mine = [r for r in rows if r.table == name]
        lines += [f"## `{name}`", "",
                  f"{info['configs']} configurations x seeds {info['seeds']} "
                  f"(commit {str(info.get('commit') or '?')[:8]}); final test mAP@.5 of the best "
                  f"{info['best_final']:.3f}"
                  + (f", median over the configurations {info['median_final']:.3f}."
                     if info.get("median_final") is not None else ".")
                  if info.get("best_final") is not None else
                  f"{info['configs']} configurations: too few to rank.", ""]
        if not mine:
            continue
        steps = sorted({r.step for r in mine})
        metrics = [m for m in CANDIDATES if any(r.metric == m for r in mine)]
        by = {(r.metric, r.step): r for r in mine}
        header = "| rung metric | " + " | ".join(str(s) for s in steps) + " |"
        lines += ["Spearman rho:", "", header, "|" + " --- |" * (len(steps) + 1)]
        for metric in metrics:
            cells = [f"{by[(metric, s)].spearman:.2f}" if (metric, s) in by else "-"
                     for s in steps]
            lines.append(f"| `{metric}` | " + " | ".join(cells) + " |")
        lines += ["", f"Share of the final top {TOP} kept:", "", header,
                  "|" + " --- |" * (len(steps) + 1)]
        for metric in metrics:
            cells = [f"{by[(metric, s)].top_kept:.2f}" if (metric, s) in by else "-"
                     for s in steps]
            lines.append(f"| `{metric}` | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=Path, nargs="+", default=list(DEFAULT_TABLES))
    parser.add_argument("--final-metric", default="map_50",
                        help="val metric whose best step is exported (default map_50)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="only these seeds of every table (compare a partly recorded "
                             "table with a complete one on the seeds both have)")
    parser.add_argument("--common-configs", action="store_true",
                        help="only the configurations every table has (for all its seeds)")
    parser.add_argument("--reduction-factor", type=int, default=None,
                        help="ASHA's reduction factor for the 'top kept' table (default: the "
                             "shipped search_spaces/iou.yaml's)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    parser.add_argument("--report", default="rank_correlation",
                        help="file stem of the report in --out (default rank_correlation)")
    args = parser.parse_args(argv)
    factor = (shipped_reduction_factor() if args.reduction_factor is None
              else args.reduction_factor)
    if factor < 2:
        parser.error(f"--reduction-factor {factor}: must be >= 2")
    tables: dict[str, dict[str, Any]] = {}
    rows: list[Row] = []
    loaded = {}
    for path in args.tables:
        if not path.is_file():
            print(f"skipping {path}: not recorded", file=sys.stderr)
            continue
        table = CurveTable.from_jsonl(path)
        loaded[path] = only_seeds(table, args.seeds) if args.seeds is not None else table
    if args.common_configs and loaded:
        common = set.intersection(*({config_key(p) for p in t.complete_points()}
                                    for t in loaded.values()))
        loaded = {path: only_configs(t, common) for path, t in loaded.items()}
    for path, table in loaded.items():
        meta = read_meta(path)
        mine = rung_rows(path.stem, table, args.final_metric, factor)
        finals = [final_quality(table, config_key(p), args.final_metric)
                  for p in table.complete_points()]
        finals = [f for f in finals if f is not None]
        tables[path.stem] = {"configs": len(table.complete_points()), "seeds": table.seeds,
                             "commit": meta.get("commit"),
                             "best_final": max(finals) if finals else None,
                             "median_final": statistics.median(finals) if finals else None}
        rows += mine
    args.out.mkdir(parents=True, exist_ok=True)
    shown = [str(a) for a in (argv if argv is not None else sys.argv[1:])]
    (args.out / f"{args.report}.md").write_text(render(tables, rows, args.final_metric, shown,
                                                                factor))
    (args.out / f"{args.report}.json").write_text(json.dumps(
        {"tables": tables, "reduction_factor": factor, "rows": [r.__dict__ for r in rows]},
        indent=1) + "\n")
    print(f"wrote {args.out / args.report}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
