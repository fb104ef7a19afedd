"""Resume past state files that a killed session left half-written.

Tune saves an experiment's state (the trial table, the search generator, the searcher) into a
local staging folder, each file written whole, then copies the folder to the experiment folder
in a background thread, file by file, in place. A driver killed during that copy (SIGKILL, the
OOM killer, a lost head node) leaves its session's newest state file cut short. `Tuner.restore`
then logs "Failed to restore the run state" and carries on as a new run: the interrupted trials
are never continued and the search ends at once, exit code 0 (measured with Ray 2.6x).

Before a resume, the newest file of each family is checked to be whole (JSON parses; a pickle,
told by its first byte whatever the file's name, reaches its STOP opcode, read with
`pickletools` so nothing is executed or loaded). A damaged
one is set aside as `damaged-<name>`, so Tune restores the previous session's file, which is
whole; trials started in the killed session then continue from that earlier state. The Optuna
study lives in its own journal (`search.store.study_journal`) and loses nothing either way.
A trial of that state whose checkpoint Tune has since deleted is pointed at its newest
checkpoint left (`search.resume.checkpoints`).
"""

from __future__ import annotations

import json
import pickletools
from collections.abc import Callable

from detr_core.files.errors import UserInputError
from search.resume.checkpoints import repoint_deleted_checkpoints
from search.store.storage import ExperimentPath

DAMAGED_PREFIX = "damaged-"
PICKLE_PROTO = b"\x80"  # the first byte of every pickle of protocol 2 or later
EXPERIMENT_STATE = "experiment_state-*.json"
SEARCH_GENERATOR_STATE = "search_gen_state-*.json"
SEARCHER_STATE = "searcher-state-*.pkl"
BASIC_VARIANT_STATE = "basic-variant-state-*.json"


def _json_is_whole(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _pickle_is_whole(data: bytes) -> bool:
    try:
        return any(op.name == "STOP" for op, _arg, _pos in pickletools.genops(data))
    except (ValueError, EOFError, IndexError, KeyError, UnicodeDecodeError):  # a cut stream
        return False


def _is_whole(data: bytes) -> bool:
    """Told by content, not by name: Tune's `search_gen_state-*.json` is a pickle."""
    check: Callable[[bytes], bool] = _pickle_is_whole if data[:1] == PICKLE_PROTO \
        else _json_is_whole
    return bool(data) and check(data)


def _set_aside(path: ExperimentPath, data: bytes) -> None:
    """Rename `path` (holding `data`) to damaged-<name> (kept for a post-mortem; no longer
    matched by Tune)."""
    (path.parent / f"{DAMAGED_PREFIX}{path.name}").write_bytes(data)
    path.unlink()


def _newest_whole(experiment_dir: ExperimentPath, pattern: str, notes: list[str]
                  ) -> bool | None:
    """Set aside the newest files of `pattern` until the newest one left is whole; whether a
    whole one is left (None: there was no such file). Tune takes the greatest name (the
    session's start time)."""
    paths = sorted(experiment_dir.glob(pattern), key=lambda p: p.name, reverse=True)
    if not paths:
        return None
    for path in paths:
        data = path.read_bytes()
        if _is_whole(data):
            return True
        _set_aside(path, data)
        notes.append(f"{path.name} was cut short (its session was killed while saving it): "
                     f"set aside as {DAMAGED_PREFIX}{path.name}, resuming from the session "
                     "before it")
    return False


def repair_saved_state(experiment_dir: ExperimentPath) -> list[str]:
    """Make the newest state file of each family whole before `Tuner.restore`; one line per
    file set aside. Raises UserInputError when no whole experiment state is left."""
    notes: list[str] = []
    if not _newest_whole(experiment_dir, EXPERIMENT_STATE, notes):
        raise UserInputError("cannot resume: no whole experiment state is left (each "
                             "experiment_state-*.json was cut short when its session was "
                             "killed); start the search again with --name",
                             source=str(experiment_dir))
    newest = max(experiment_dir.glob(EXPERIMENT_STATE), key=lambda p: p.name)
    notes += repoint_deleted_checkpoints(experiment_dir, newest)
    _newest_whole(experiment_dir, BASIC_VARIANT_STATE, notes)
    searcher_left = _newest_whole(experiment_dir, SEARCHER_STATE, notes)
    generator_left = _newest_whole(experiment_dir, SEARCH_GENERATOR_STATE, notes)
    if generator_left and searcher_left is False:  # searcher files there, none whole
        # Tune restores the generator only together with a searcher state: without one it
        # raises, so the generator's state goes too and the searcher starts from tuner.pkl
        # (its study, in the journal, still holds every trial told so far)
        for path in experiment_dir.glob(SEARCH_GENERATOR_STATE):
            _set_aside(path, path.read_bytes())
            notes.append(f"{path.name}: set aside with the damaged searcher state")
    return notes
