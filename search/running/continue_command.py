"""The exact command that continues an interrupted search, as its last line says it. `python
search/run.py --space FILE --name NAME --resume`, plus every flag of the first command that
changes what the rest of the search does (`--storage`, `--address`, the overrides of the space
file's settings, `--finalists` / `--finalist-seeds` (`--final-seeds` as those), `--report-dir`,
the dashboard flags, `-v`).
`--time-budget` is left out on purpose: the budget was for the first session, and what is left
is the user's call.
When nothing can be resumed yet (stopped before Tune saved the experiment), it is the same
command without `--resume` (with its `--warm-start` sources: a resumed search keeps its study).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from search.running.cli import DEFAULT_DASHBOARD_PORT, DEFAULT_STORAGE, experiment_path

#: argparse destination -> flag, for the flags carried over as they were given.
_CARRIED = (
    ("num_samples", "--num-samples"),
    ("max_concurrent", "--max-concurrent"),
    ("cpus_per_trial", "--cpus-per-trial"),
    ("gpus_per_trial", "--gpus-per-trial"),
    ("seed", "--seed"),
    ("max_failures", "--max-failures"),
    ("address", "--address"),
    ("report_dir", "--report-dir"),
)


def resume_argv(args: argparse.Namespace, name: str, resume: bool = True) -> list[str]:
    """The arguments of `search/run.py` that continue the search `args` started."""
    argv = ["--space", str(args.space), "--name", name]
    if resume:
        argv.append("--resume")
    else:  # started anew: with the earlier experiments it was warm-started from
        for source in getattr(args, "warm_start", None) or []:
            argv += ["--warm-start", str(source)]
    if args.storage and args.storage != DEFAULT_STORAGE:
        argv += ["--storage", str(args.storage)]
    for dest, flag in _CARRIED:
        value = getattr(args, dest, None)
        if value is not None:
            argv += [flag, _number(value)]
    for dest, flag in (("finalists", "--finalists"), ("finalist_seeds", "--finalist-seeds")):
        if getattr(args, dest, None) is not None:  # --final-seeds S is carried as these
            argv += [flag, str(getattr(args, dest))]
    if getattr(args, "no_dashboard", False):
        argv.append("--no-dashboard")
    elif getattr(args, "dashboard_port", DEFAULT_DASHBOARD_PORT) != DEFAULT_DASHBOARD_PORT:
        argv += ["--dashboard-port", str(args.dashboard_port)]
    argv += ["-v"] * int(getattr(args, "verbose", 0) or 0)
    return argv


def resume_command(args: argparse.Namespace, name: str, resume: bool = True) -> str:
    """`python search/run.py ...` (shell-quoted) that continues the search."""
    return shlex.join(["python", "search/run.py", *resume_argv(args, name, resume)])


def can_resume(args: argparse.Namespace, name: str) -> bool:
    """True when Tune saved an experiment there (or it is remote: Tune will tell)."""
    path = experiment_path(args.storage or DEFAULT_STORAGE, name)
    return "://" in path or any(Path(path).glob("experiment_state-*.json"))


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
