"""`python search/run.py --space search_spaces/iou.yaml`: run a DETR hyperparameter search.

Parses the flags (`search.cli`), loads and validates the space file before anything starts
(a bad file: one line naming file and key, exit 2), picks the experiment folder (`iou`, else
the next free `iou-2`, ...: `search.naming`), prints the resolved search, then runs it
(`search.driver.run_search`): Ray Tune + Optuna TPE + ASHA, our progress on the console,
results and REPORT.md in `results/<name>/`. See `--help` and README.md.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detr_core.errors import exit_on_user_error
from search.cli import describe, parse_args, spec_overrides
from search.naming import choose_experiment
from search.spec_loading import load_search_spec


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    spec = load_search_spec(args.space, spec_overrides(args))
    choice = choose_experiment(args.storage, spec.name, explicit=args.name is not None,
                               resume=args.resume)
    for note in choice.notes:
        print(note, flush=True)
    spec = dataclasses.replace(spec, name=choice.name)
    print(describe(spec, args), flush=True)
    if args.dry_run:
        return 0
    from search.driver import SearchOptions, run_search

    options = SearchOptions(
        storage=args.storage, address=args.address, resume=args.resume,
        dashboard=not args.no_dashboard, dashboard_port=args.dashboard_port,
        final_seeds=args.final_seeds, verbose=args.verbose, time_budget_s=args.time_budget,
        report_dir=args.report_dir,
    )
    experiment_dir = run_search(spec, options)
    print(f"done: {experiment_dir}/REPORT.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
