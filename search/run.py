"""`python search/run.py --space search_spaces/iou.yaml`: run a DETR hyperparameter search.

Every input is checked before anything starts. Exit codes: 0 done, 2 bad input, 130 / 143 on
Ctrl-C / SIGTERM, 1 when the disk filled up; in the last three cases the last line is the
command that continues the search.
"""

from __future__ import annotations

import dataclasses
import errno
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detr_core.files.errors import UserInputError, exit_on_user_error
from search.running.cli import (
    can_resume,
    check_dashboard,
    choose_experiment,
    cluster_address,
    describe,
    parse_args,
    resume_command,
    spec_overrides,
)
from search.running.interrupt import SearchInterrupted, SearchInterrupts
from search.space.preflight import check_search_inputs
from search.space.spec import load_search_spec
from search.store.storage import StorageUnavailable

#: A full disk (or quota): the search stops, resumable, instead of a traceback.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    spec = load_search_spec(args.space, spec_overrides(args))
    check_search_inputs(spec)
    check_dashboard(spec, args)
    choice = choose_experiment(args.storage, spec.name, explicit=args.name is not None,
                               resume=args.resume)
    for note in choice.notes:
        print(note, flush=True)
    spec = dataclasses.replace(spec, name=choice.name)
    warm_start = None
    if args.warm_start:  # every source opened and checked before anything is written
        if args.resume:
            raise UserInputError("seeds a new search; a resumed one keeps its own study "
                                 "(leave out --warm-start or --resume)", key="--warm-start")
        from search.lineage.warm_start import plan_warm_start

        warm_start = plan_warm_start(spec, args.warm_start)
    if args.dry_run:  # the data checked exactly as the driver checks it, nothing written
        from search.trial.node_data import data_record

        record = data_record(spec.base, str(spec.source), on_cluster=bool(cluster_address(args)))
        print(describe(spec, args, warm_start), flush=True)
        print("Data:", *(record["summary"] or ["  not on this machine: each trial checks it"]),
              sep="\n", flush=True)
        return 0
    print(describe(spec, args, warm_start), flush=True)
    from search.running.driver import SearchOptions, run_search

    def next_command() -> str:
        return resume_command(args, spec.name, resume=can_resume(args, spec.name))

    interrupts = SearchInterrupts(final_line=next_command)
    options = SearchOptions(
        storage=args.storage, address=cluster_address(args), resume=args.resume,
        dashboard=not args.no_dashboard, dashboard_port=args.dashboard_port,
        verbose=args.verbose, time_budget_s=args.time_budget, interrupts=interrupts,
        resume_command=resume_command(args, spec.name), report_dir=args.report_dir)
    interrupts.install()
    try:
        experiment_dir = run_search(spec, options, warm_start)
    except SearchInterrupted:
        print(f"interrupted by {interrupts.signal_name}; continue with:", flush=True)
        print(next_command(), flush=True)
        return interrupts.exit_code
    except StorageUnavailable as exc:
        print(f"error: {exc}; once it answers, continue with:", file=sys.stderr, flush=True)
        print(next_command(), flush=True)
        return 1
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror}{where}; free some space, then continue with:",
              file=sys.stderr, flush=True)
        print(next_command(), flush=True)
        return 1
    finally:
        interrupts.restore()
    if interrupts.interrupted:
        print(f"interrupted by {interrupts.signal_name}: {experiment_dir}/REPORT.md says which "
              "trials were running; resume with:", flush=True)
        print(next_command(), flush=True)
        return interrupts.exit_code
    print(f"done: {experiment_dir}/REPORT.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
