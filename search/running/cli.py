"""The command line of `python search/run.py`: flags, the plan a search prints first, the
experiment it uses and the command that continues it. Nothing here imports Ray.

Without `--name`, an existing `STORAGE/<stem>` gives the next free `<stem>-N` (as Ultralytics'
`runs/.../tune2`), `--resume` the newest; an existing explicit `--name` needs `--resume`. The
continue command keeps every flag that changes the rest of the search but `--time-budget`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detr_core.files.errors import ArgumentParser, UserInputError
from search.space.distributions import describe_distribution, format_number, format_value
from search.space.relative_ranges import recipe_lines, relative_note
from search.space.samplers import SAMPLERS, describe_sampler
from search.store.layout import SPEC_FILE, TIME_BUDGET_FILE
from search.store.storage import ExperimentPath, folder_has_entries, join_uri, location

if TYPE_CHECKING:
    from search.results.warm_trials import WarmStartRecord
    from search.space.spec import SearchSpec

DEFAULT_STORAGE = "results"
DEFAULT_DASHBOARD_PORT = 8265

#: CLI destination -> `load_search_spec` override key.
_OVERRIDES = {
    "name": "name", "num_samples": "num_samples", "max_concurrent": "max_concurrent",
    "cpus_per_trial": "cpus_per_trial", "gpus_per_trial": "gpus_per_trial", "seed": "seed",
    "sampler": "sampler", "max_failures": "max_failures", "finalists": "finalists_top",
    "finalist_seeds": "finalists_seeds",
}


def _int(text: str, low: int | None = None, port: bool = False) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if port and not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {value}")
    if low is not None and value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value


_positive_int, _non_negative_int, _port = (partial(_int, low=1), partial(_int, low=0),
                                           partial(_int, port=True))


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `2h`, `1h30m`, `1.5h` or plain seconds (`600`) -> seconds (> 0)."""
    cleaned = text.strip().lower()
    try:
        seconds = float(cleaned)
    except ValueError:
        parts = _DURATION_PART.findall(cleaned)
        if not parts or "".join(n + u for n, u in parts) != cleaned:
            raise argparse.ArgumentTypeError(
                f"expected a duration such as 90s, 30m, 2h or 1h30m, got {text!r}") from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a duration > 0, got {text!r}")
    return seconds


def format_seconds(seconds: float) -> str:
    """A duration as `2h`, `1h30m`, `90s`: how --time-budget is written."""
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = "".join(f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v)
    return text or f"{seconds:g}s"


def build_parser() -> argparse.ArgumentParser:
    """The `search/run.py` parser; every flag that mirrors the space file overrides it."""
    parser = ArgumentParser(
        prog="search/run.py",
        description="Hyperparameter search for DETR fine-tuning: Optuna TPE proposes, ASHA stops "
                    "poor trials early, Ray Tune runs them. Flags below override the space "
                    "file's `experiment:` settings.",
        epilog="Example: python search/run.py --space search_spaces/iou.yaml --dry-run",
    )
    add = parser.add_argument
    add("--space", required=True, metavar="FILE",
        help="search-space YAML file (what to search, the base run, ASHA and resources)")
    add("--name", metavar="NAME",
        help="experiment name, the folder under --storage (default: the space file's "
             "experiment.name, else its file name; when that folder exists, the next free "
             "NAME-2, NAME-3, ...). An existing --name is refused unless --resume")
    add("--num-samples", type=_positive_int, metavar="N",
        help="number of trials to run (overrides experiment.num_samples)")
    add("--max-concurrent", type=_positive_int, metavar="N",
        help="trials running at once (default: as many as the resources allow)")
    add("--cpus-per-trial", type=_non_negative_float, metavar="X",
        help="CPU cores reserved per trial; torch in a trial uses that many threads")
    add("--gpus-per-trial", type=_non_negative_float, metavar="X",
        help="GPUs per trial; a fraction packs several trials on one GPU "
             "(0.5 = two trials share a GPU); 0 trains on CPU")
    add("--address", metavar="ADDR",
        help="join an existing Ray cluster (`auto`, `host:port` or `ray://host:10001`) "
             "instead of starting a local one")
    add("--storage", default=DEFAULT_STORAGE, metavar="PATH_OR_URI",
        help="results root; the experiment goes to STORAGE/NAME (default: results/). "
             "A URI such as s3://bucket/path or gs://bucket/path works everywhere (pyarrow.fs); "
             "on several nodes use a URI or a folder every node mounts")
    add("--resume", action="store_true",
        help="continue an experiment: --name, else the newest NAME[-N] (searcher state, "
             "finished trials and checkpoints are kept). An interrupted one goes on where it "
             "stopped; with --num-samples N above its trial count, a finished one gets more "
             "trials, proposed by TPE from all of its trials")
    add("--warm-start", action="append", default=[], metavar="EXPERIMENT",
        help="seed this new search's Optuna study with the finished and ASHA-stopped trials of "
             "an earlier experiment (a folder or storage URI search/run.py wrote; repeat for "
             "several) whose values fit this space: TPE models them, they are not trained "
             "again, do not count toward --num-samples, and may win")
    add("--seed", type=_int, metavar="INT",
        help="seed of the Optuna sampler (overrides experiment.searcher.seed); "
             "the run's own seed is the `seed` key of the run config")
    add("--sampler", choices=list(SAMPLERS), metavar="NAME",
        help="the Optuna sampler (overrides experiment.searcher.sampler): "
             f"{', '.join(SAMPLERS)}; its options stay in experiment.searcher.sampler_options")
    add("--no-dashboard", action="store_true",
        help="do not start the Ray dashboard (local cluster only)")
    add("--dashboard-port", type=_port, default=DEFAULT_DASHBOARD_PORT, metavar="PORT",
        help=f"port of the Ray dashboard of a local cluster (default {DEFAULT_DASHBOARD_PORT})")
    add("--finalists", type=_non_negative_int, metavar="K",
        help="after the search, retrain its K best distinct configurations with fresh seeds "
             "and choose the winner by their mean validation value (overrides "
             "experiment.finalists.top; 0: no finalists stage)")
    add("--finalist-seeds", type=_positive_int, metavar="S",
        help="fresh seeds per finalist (overrides experiment.finalists.seeds; default 3)")
    add("--final-seeds", type=_non_negative_int, default=0, metavar="S",
        help="retrain the winner with S fresh seeds and report test mean and std: the same "
             "as --finalists 1 --finalist-seeds S")
    add("--report-dir", type=Path, metavar="DIR",
        help="also copy REPORT.md and its plots to this local folder (handy with a URI "
             "--storage)")
    add("--dry-run", action="store_true",
        help="validate the space file and print the resolved space and settings; start nothing")
    add("--time-budget", type=parse_duration, metavar="DURATION",
        help="end the search at this wall time after it starts (90s, 30m, 2h, 1h30m): running "
             "trials are cut, no new one starts, and what finished is exported")
    add("-v", "--verbose", action="count", default=0,
        help="show Ray Tune's own progress tables and Ray's logs instead of our progress "
             "lines (each trial's output stays in its trial.log either way)")
    add("--max-failures", type=_int, metavar="N",
        help="retries of an errored trial from its last checkpoint (overrides "
             "experiment.max_failures; -1 retries without limit)")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse `argv`; bad flags exit 2. `--final-seeds S` is `--finalists 1 --finalist-seeds S`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.final_seeds:
        if args.finalists is not None or args.finalist_seeds is not None:
            parser.error("--final-seeds S means --finalists 1 --finalist-seeds S: give one or "
                         "the other")
        args.finalists, args.finalist_seeds = 1, args.final_seeds
    return args


def spec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given on the command line as `load_search_spec` overrides (None = not given)."""
    return {key: getattr(args, dest, None) for dest, key in _OVERRIDES.items()
            if getattr(args, dest, None) is not None}


def storage_root(storage: str) -> str:
    """`--storage` as Ray wants it: a URI unchanged, a local path absolute."""
    return storage.rstrip("/") if "://" in storage else str(Path(storage).expanduser().resolve())


def experiment_path(storage: str, name: str) -> str:
    """STORAGE/NAME: a URI (its query kept last) or an absolute path."""
    root = storage_root(storage)
    return join_uri(root, name)


def cluster_address(args: argparse.Namespace) -> str | None:
    """The Ray cluster to join: `--address`, else `RAY_ADDRESS`, which `ray job submit` sets
    for its entrypoint (and `ray.init` reads); None: start a local one."""
    return getattr(args, "address", None) or os.environ.get("RAY_ADDRESS") or None


def describe(spec: SearchSpec, args: argparse.Namespace | None = None,
             warm_start: WarmStartRecord | None = None) -> str:
    """The resolved search in words, warm-start trials included: what `--dry-run` prints."""
    from search.lineage.warm_start import startup_note

    args = args or argparse.Namespace()
    storage = getattr(args, "storage", DEFAULT_STORAGE) or DEFAULT_STORAGE
    sched = spec.scheduler
    rungs = ", ".join(format_number(r) for r in sched.rungs())
    concurrent = (f"at most {spec.max_concurrent} at a time" if spec.max_concurrent
                  else "as many at a time as the resources allow")
    seed = "random" if spec.searcher.seed is None else str(spec.searcher.seed)
    failures, budget = spec.max_failures, getattr(args, "time_budget", None)
    lines = [
        f"Search {spec.name!r} from {spec.source}",
        f"  metric      {spec.metric} ({spec.mode})",
        f"  trials      {spec.num_samples}, {concurrent}",
        f"  searcher    {describe_sampler(spec.searcher.sampler, spec.searcher.sampler_options)}"
        f", seed {seed}, "
        f"{startup_note(warm_start, spec.searcher.n_startup_trials)}",
        *(f"  first       {', '.join(f'{k}={format_value(v)}' for k, v in point.items())}"
          for point in spec.searcher.points_to_evaluate),
        f"  ASHA        in optimizer steps: grace_period {sched.grace_period}, "
        f"reduction_factor {format_number(sched.reduction_factor)}, max_t {sched.max_t}",
        f"              rungs at steps {rungs}; every trial stops by step {sched.max_t}",
        *_resource_lines(spec),
        "  retries     " + (
            "an errored trial is retried without limit from its last checkpoint" if failures < 0
            else "none (an errored trial stays errored)" if failures == 0
            else f"an errored trial is retried up to {failures}x from its last checkpoint"),
        f"  results     {experiment_path(storage, spec.name)}",
        "  cluster     " + (
            f"existing Ray cluster at {address}"
            + ("" if getattr(args, "address", None) else " (RAY_ADDRESS)")
            if (address := cluster_address(args))
            else "local Ray, no dashboard" if getattr(args, "no_dashboard", False)
            else "local Ray, dashboard on http://127.0.0.1:"
            f"{getattr(args, 'dashboard_port', DEFAULT_DASHBOARD_PORT)}"),
        f"  finalists   {_finalists(spec)}",
        "  time budget " + (
            f"{format_seconds(budget)}: trials still running then are cut, what finished is "
            "exported" if budget else "none (every trial runs until done or stopped by ASHA)"),
        f"  base run    {spec.base_source}",
    ]
    if warm_start is not None:
        lines.append(f"Warm start ({len(warm_start.trials)} trial(s) of earlier searches, "
                     "not trained again):")
        lines += [f"  {line}" for line in warm_start.lines()]
    searched = spec.searched_keys()
    width = max((len(k) for k in spec.space), default=0)
    lines.append(f"Searched ({len(searched)}):")
    for key in searched:
        note = relative_note(spec.recipe, key)
        lines.append(f"  {key:<{width}}  {describe_distribution(spec.space[key])}"
                     + (f", {note}" if note else ""))
    fixed = spec.fixed_values()
    if fixed:
        lines.append(f"Fixed ({len(fixed)}):")
        lines += [f"  {k:<{width}}  = {format_value(v)}" for k, v in fixed.items()]
    return "\n".join(lines + recipe_lines(spec.base, spec.space, spec.recipe))


def _resource_lines(spec: SearchSpec) -> list[str]:
    """What a trial reserves: one process, or a data-parallel job placed as Ray Train does."""
    res = spec.resources
    workers = res.workers_per_trial
    if workers == 1:
        cpus, gpus = res.cpus_per_trial, res.gpus_per_trial
        return [f"  resources   {format_number(cpus)} CPU, {format_number(gpus)} GPU per trial"
                + (f" ({math.floor(1 / gpus + 1e-9)} trials share one GPU)"
                   if 0 < gpus < 1 else "")]
    backend = "nccl" if res.gpus_per_worker > 0 else "gloo"
    return [
        f"  resources   a data-parallel job a trial: 1 driver (no CPU) + {workers} workers x "
        f"{format_number(res.cpus_per_worker)} CPU, {format_number(res.gpus_per_worker)} GPU "
        f"({backend}); global batch = per_device_train_batch_size x {workers} x "
        "gradient_accumulation_steps, learning rate not scaled",
        "              workers: rank 0 reports metrics and checkpoints; the whole validation "
        "split is evaluated; retries restart all workers from the last checkpoint "
        "(experiment.max_failures)",
    ]


def check_dashboard(spec: SearchSpec, args: argparse.Namespace) -> None:
    """`--no-dashboard` refused for data-parallel trials on a local cluster: Ray Train frees a
    stopped trial's worker placement group through the State API, which the dashboard serves;
    without it the next trial waits forever. A joined cluster's dashboard is its own."""
    workers = spec.resources.workers_per_trial
    if workers > 1 and getattr(args, "no_dashboard", False) and not cluster_address(args):
        raise UserInputError(
            f"{spec.source} runs data-parallel trials (experiment.resources.workers_per_trial "
            f"{workers}), which need the local Ray cluster's dashboard: Ray Train frees a "
            "stopped trial's worker placement group through the State API it serves, without "
            "it the next trial waits forever (leave out --no-dashboard)", key="--no-dashboard")


def _finalists(spec: SearchSpec) -> str:
    """What the finalists stage adds to the search, in runs and optimizer steps."""
    stage = spec.finalists
    if not stage.on:
        return "none (the winner is the search's best single run)"
    runs, max_t = stage.top * stage.seeds, spec.scheduler.max_t
    return (f"the {stage.top} best configuration(s) x {stage.seeds} fresh seeds after the "
            f"search, winner by mean {spec.metric}: adds {runs} run(s) of up to {max_t} steps "
            f"({runs * max_t:,} steps; the search's {spec.num_samples} trials: at most "
            f"{spec.num_samples * max_t:,})")


@dataclass
class ExperimentChoice:
    """The experiment name to use, and the lines to print about the choice first."""

    name: str
    notes: list[str] = field(default_factory=list)


def experiment_location(storage: str, name: str) -> ExperimentPath:
    """STORAGE/NAME as a `Path` or a `UriPath`."""
    return location(join_uri(storage, name))


def existing_suffixes(storage: str, stem: str) -> dict[int, str]:
    """Experiments `<stem>` (as 1) and `<stem>-N` under STORAGE that hold anything, by number."""
    pattern = re.compile(rf"^{re.escape(stem)}(?:-([0-9]+))?$")
    root = location(storage)
    found = {}
    try:
        if not root.is_dir():
            return found
        for entry in root.iterdir():
            match = pattern.match(entry.name)
            if match and entry.is_dir() and folder_has_entries(entry):
                number = int(match.group(1)) if match.group(1) else 1
                if number >= 2 or match.group(1) is None:
                    found[number] = entry.name
    except OSError as exc:  # no such bucket, no credentials, no network
        raise UserInputError(f"cannot list the storage: {' '.join(str(exc).split())}",
                             source=storage) from None
    return found


def unfinished_reason(experiment: ExperimentPath) -> str | None:
    """Why an experiment looks unfinished (`3 of 8 trials ended`), or None (a `--time-budget`
    ended it on purpose)."""
    from search.cluster.ray_internals import trial_states
    from search.space.spec import read_spec_file

    if (experiment / TIME_BUDGET_FILE).is_file():
        return None
    try:
        planned = read_spec_file(experiment).num_samples if (experiment / SPEC_FILE).is_file() \
            else None
    except UserInputError:
        planned = None
    states = trial_states(experiment)
    ended = sum(status in ("TERMINATED", "ERROR") for _, status in states.values())
    if planned is None:
        return None if states and ended == len(states) else f"{ended} trials ended"
    return None if ended >= planned else f"{ended} of {planned} trials ended"


def choose_experiment(storage: str, stem: str, *, explicit: bool,
                      resume: bool) -> ExperimentChoice:
    """The experiment a search writes to or resumes (see the module docstring)."""
    shown = storage.rstrip("/")
    if explicit:
        where = experiment_location(storage, stem)
        if not resume and existing_suffixes(storage, stem).get(1) == stem:
            raise UserInputError(f"experiment {stem!r} exists; pass --resume to continue it, "
                                 "or leave out --name for a new numbered one", source=where)
        return ExperimentChoice(stem)
    existing = existing_suffixes(storage, stem)
    if not existing:
        return ExperimentChoice(stem)
    newest = existing[max(existing)]
    if resume:
        others = ", ".join(existing[n] for n in sorted(existing) if existing[n] != newest)
        note = f"resuming {newest}, the newest in {shown}" + (f" (also: {others})"
                                                               if others else "")
        return ExperimentChoice(newest, [note])
    name = f"{stem}-{max(existing) + 1}"
    notes = [f"{shown}/{newest} exists: this search is {name} ({shown}/{name}); "
             f"`--resume` continues {newest} instead"]
    reason = unfinished_reason(experiment_location(storage, newest))
    if reason:
        notes.append(f"warning: {newest} is unfinished ({reason}); `--resume` continues it")
    return ExperimentChoice(name, notes)


#: Flags carried over as given (`--finalists`, `--finalist-seeds` carry `--final-seeds S` too).
_CARRIED = ("num_samples", "max_concurrent", "cpus_per_trial", "gpus_per_trial", "seed",
            "max_failures", "address", "report_dir", "finalists", "finalist_seeds")


def resume_command(args: argparse.Namespace, name: str, resume: bool = True) -> str:
    """`python search/run.py ...` (shell-quoted) that continues the search `args` started."""
    argv = ["python", "search/run.py", "--space", str(args.space), "--name", name]
    if resume:
        argv.append("--resume")
    else:  # started anew: with the earlier experiments it was warm-started from
        for source in getattr(args, "warm_start", None) or []:
            argv += ["--warm-start", str(source)]
    if args.storage and args.storage != DEFAULT_STORAGE:
        argv += ["--storage", str(args.storage)]
    for dest in _CARRIED:
        value = getattr(args, dest, None)
        if value is not None:
            whole = isinstance(value, float) and value.is_integer()  # 2.0 as 2
            argv += ["--" + dest.replace("_", "-"), str(int(value) if whole else value)]
    if getattr(args, "no_dashboard", False):
        argv.append("--no-dashboard")
    elif getattr(args, "dashboard_port", DEFAULT_DASHBOARD_PORT) != DEFAULT_DASHBOARD_PORT:
        argv += ["--dashboard-port", str(args.dashboard_port)]
    argv += ["-v"] * int(getattr(args, "verbose", 0) or 0)
    return shlex.join(argv)


def can_resume(args: argparse.Namespace, name: str) -> bool:
    """True when Tune saved an experiment there (or it is remote: Tune will tell)."""
    path = experiment_path(args.storage or DEFAULT_STORAGE, name)
    return "://" in path or any(Path(path).glob("experiment_state-*.json"))
