"""Resume a trial whose saved checkpoint Tune deleted before the session was killed.

Tune keeps `num_to_keep` checkpoints of a trial (plus its latest). When a trial registers a new
checkpoint, Tune deletes the one that falls out, from storage, at once
(Ray 2.6x `train/_internal/checkpoint_manager.py::register_checkpoint`); the experiment state
that names the new checkpoint reaches the experiment folder later, from a throttled background
copy. A driver killed between the two (SIGKILL, the OOM killer, a lost head node) leaves a state
whose trial resumes from a checkpoint that no longer exists: Tune's restore raises "Could not
recover from checkpoint as it does not exist on storage anymore" and the trial ends errored
after its retries (seen in tests/scenarios/test_search_interrupts.py).

Before `Tuner.restore`, each unfinished trial of the state Tune will restore is checked; one
whose latest checkpoint is gone is pointed at its newest whole checkpoint still on storage
(`search.results.winner.read_checkpoints`, the trial's own newer work), or at none (the trial
starts over) when it has none. The state is decoded and re-encoded by Ray's own trial metadata
(`search.cluster.ray_internals`), so nothing but the checkpoint reference changes.

Resume past state files that a killed session left half-written.

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
checkpoint left (`search.resume.state`).
"""

from __future__ import annotations

import json
import pickletools
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from detr_core.files.errors import UserInputError
from search.cluster.ray_internals import checkpoint_results, repoint_checkpoint, trial_entries
from search.results.winner import read_checkpoints
from search.store.storage import ExperimentPath, write_text_atomic

FINISHED = ("TERMINATED",)


def _replacement(trial_dir: ExperimentPath, manager: Any, latest: Any
                 ) -> tuple[Any, dict[str, Any], str]:
    """(the checkpoint to resume from, or None; its metrics; its folder name for the note)."""
    from ray.train import Checkpoint

    found = read_checkpoints(trial_dir)
    if not found:
        return None, {}, "no checkpoint: it starts over"
    folder = found[-1][0]
    path = str(PurePosixPath(latest.checkpoint.path).parent / folder.name)
    kept = [r for r in checkpoint_results(manager) if r.checkpoint.path == path]
    checkpoint = Checkpoint(path, filesystem=latest.checkpoint.filesystem)
    return checkpoint, (kept[0].metrics if kept else {}), folder.name


def repoint_deleted_checkpoints(experiment_dir: ExperimentPath, state_file: ExperimentPath
                                ) -> list[str]:
    """Point every unfinished trial of `state_file` whose latest checkpoint was deleted at
    the newest one left; the state is rewritten (atomically) only when one changed. One note
    per trial changed."""
    state = json.loads(state_file.read_text())
    notes = []
    for entry, trial, metadata in trial_entries(state):
        if trial.get("status") in FINISHED:
            continue
        manager = metadata.checkpoint_manager
        latest = manager.latest_checkpoint_result if manager else None
        if latest is None or latest.checkpoint is None:
            continue
        gone = PurePosixPath(latest.checkpoint.path)
        trial_dir = experiment_dir / gone.parent.name
        if (trial_dir / gone.name).exists():
            continue
        checkpoint, metrics, name = _replacement(trial_dir, manager, latest)
        kept = [r for r in checkpoint_results(manager)
                if (trial_dir / PurePosixPath(r.checkpoint.path).name).exists()]
        repoint_checkpoint(entry, metadata, kept, checkpoint, metrics)
        notes.append(f"trial {trial.get('trial_id')}: its saved checkpoint {gone.name} was "
                     "deleted by Tune before its killed session saved the next; resuming from "
                     f"{name}")
    if notes:
        write_text_atomic(state_file, json.dumps(state, indent=2))
    return notes


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
