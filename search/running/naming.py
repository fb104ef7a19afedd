"""Which experiment folder a search uses: `iou`, then `iou-2`, `iou-3`, ... (never overwritten).

Typing the same command twice must not fail: without `--name`, a search whose folder
`STORAGE/<stem>` exists (the stem is the space file's `experiment.name` or its file name) gets
the next free suffix, one past the highest in use (as Ultralytics' `runs/.../tune2`), and says
so in one line, with a warning when the newest one is unfinished. `--resume` without `--name`
continues the newest `<stem>[-N]`. An explicit `--name` is taken as given: an existing one is
refused, pointing to `--resume`. The same on a storage URI (folders listed with `pyarrow.fs`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from detr_core.files.errors import UserInputError
from search.store.layout import SPEC_FILE, TIME_BUDGET_FILE
from search.store.storage import ExperimentPath, folder_has_entries, is_uri, join_uri, location

#: Tune's trial states of a trial that will not run again.
_ENDED = {"TERMINATED", "ERROR"}


@dataclass
class ExperimentChoice:
    """The experiment name to use, and the lines to print about the choice first."""

    name: str
    notes: list[str] = field(default_factory=list)


def experiment_location(storage: str, name: str) -> ExperimentPath:
    """STORAGE/NAME as a `Path` or a `UriPath`."""
    return location(join_uri(storage, name) if is_uri(storage) else f"{storage}/{name}")


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
    """Why an experiment looks unfinished (`3 of 8 trials ended`), or None when it is not.

    Read from Ray's newest `experiment_state-*.json` and `search_spec.yaml`; a search that its
    `--time-budget` ended is finished on purpose.
    """
    from search.results.reading import read_ray_states
    from search.space.spec import read_spec_file

    if (experiment / TIME_BUDGET_FILE).is_file():
        return None
    try:
        planned = read_spec_file(experiment).num_samples if (experiment / SPEC_FILE).is_file() \
            else None
    except UserInputError:
        planned = None
    states = read_ray_states(experiment)
    ended = sum(status in _ENDED for _, status in states.values())
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
