"""`python search/export.py EXPERIMENT`: rebuild everything a search leaves behind from its
folder alone (also after a crash), or compare searches (`--compare A B ...`: COMPARE.md).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detr_core.files.errors import ArgumentParser, exit_on_user_error
from search.results.export import copy_report, export_experiment
from search.store.storage import location


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when done; 1 when no trial reported the metric or the test evaluation failed
    (the rest is written anyway); 2 on a user error."""
    parser = ArgumentParser(
        prog="search/export.py",
        description="Rebuild best_config.yaml, best_model/, trials.csv, plots/ and REPORT.md "
                    "from a Ray Tune experiment folder written by search/run.py.",
    )
    parser.add_argument("experiment_dir", nargs="?",
                        help="e.g. results/iou or s3://bucket/results/iou")
    parser.add_argument("--compare", nargs="+", metavar="EXPERIMENT",
                        help="compare these searches, in this order (the sequence): write "
                             "COMPARE.md with a table and the best value so far against "
                             "cumulative compute, into --out")
    parser.add_argument("--out", metavar="DIR",
                        help="where --compare writes COMPARE.md and compare_plots/ (default: "
                             "the folder holding the first experiment)")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="do not evaluate the winner on the test split")
    parser.add_argument("--report-dir", type=Path, metavar="DIR",
                        help="also copy REPORT.md and its plots to this local folder")
    args = parser.parse_args(argv)
    if args.compare:
        if args.experiment_dir:
            parser.error("give either an experiment to export or --compare EXPERIMENT ...")
        from search.results.compare import compare_experiments

        out = args.out or str(location(args.compare[0]).parent)
        print(f"comparison: {compare_experiments(args.compare, out)}")
        return 0
    if not args.experiment_dir:
        parser.error("give the experiment folder to export (or --compare EXPERIMENT ...)")
    summary = export_experiment(args.experiment_dir, evaluate_winner=not args.no_evaluate)
    print(summary.describe())
    if args.report_dir is not None:
        print(f"report copy: {copy_report(summary, args.report_dir)}")
    return 0 if summary.winner is not None and not summary.test_error else 1


if __name__ == "__main__":
    sys.exit(main())
