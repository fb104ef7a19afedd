"""The saved Tune state of an interrupted search, repaired before `Tuner.restore`.

A driver killed while Tune's background thread copies its state files leaves the newest one cut
short, and `Tuner.restore` then starts a new run that ends at once, exit code 0 (measured with
Ray 2.6x). So the newest file of each family must be whole (JSON parses; a pickle reaches STOP
in `pickletools`, nothing executed), else it is set aside as `damaged-<name>` and Tune restores
the session before it (the Optuna journal loses nothing). Tune also deletes a checkpoint that
falls out of `num_to_keep` before the state naming the next one lands: such a trial would end
errored, so it is pointed at its newest checkpoint left, or none.
"""

from __future__ import annotations

import json
import pickletools
from pathlib import PurePosixPath

from detr_core.files.errors import UserInputError
from search.cluster.ray_internals import checkpoint_results, repoint_checkpoint, trial_entries
from search.results.winner import read_checkpoints
from search.store.storage import ExperimentPath, write_text_atomic

DAMAGED_PREFIX = "damaged-"
PICKLE_PROTO = b"\x80"  # the first byte of every pickle of protocol 2 or later
EXPERIMENT_STATE = "experiment_state-*.json"
SEARCH_GENERATOR_STATE = "search_gen_state-*.json"
SEARCHER_STATE = "searcher-state-*.pkl"
BASIC_VARIANT_STATE = "basic-variant-state-*.json"


def repoint_deleted_checkpoints(experiment_dir: ExperimentPath, state_file: ExperimentPath
                                ) -> list[str]:
    """Point every unfinished trial of `state_file` whose latest checkpoint was deleted at the
    newest one left, rewriting the state (atomically) only then; one note per trial."""
    state = json.loads(state_file.read_text())
    notes = []
    for entry, trial, metadata in trial_entries(state):
        if trial.get("status") == "TERMINATED":
            continue
        manager = metadata.checkpoint_manager
        latest = manager.latest_checkpoint_result if manager else None
        if latest is None or latest.checkpoint is None:
            continue
        gone = PurePosixPath(latest.checkpoint.path)
        trial_dir = experiment_dir / gone.parent.name
        if (trial_dir / gone.name).exists():
            continue
        checkpoint, metrics, name = None, {}, "no checkpoint: it starts over"
        found = read_checkpoints(trial_dir)
        if found:  # the newest left, with the metrics Tune kept for it
            from ray.train import Checkpoint

            name = found[-1][0].name
            path = str(gone.parent / name)
            same = [r.metrics for r in checkpoint_results(manager) if r.checkpoint.path == path]
            checkpoint = Checkpoint(path, filesystem=latest.checkpoint.filesystem)
            metrics = same[0] if same else {}
        kept = [r for r in checkpoint_results(manager)
                if (trial_dir / PurePosixPath(r.checkpoint.path).name).exists()]
        repoint_checkpoint(entry, metadata, kept, checkpoint, metrics)
        notes.append(f"trial {trial.get('trial_id')}: its saved checkpoint {gone.name} was "
                     "deleted by Tune before its killed session saved the next; resuming from "
                     f"{name}")
    if notes:
        write_text_atomic(state_file, json.dumps(state, indent=2))
    return notes


def _is_whole(data: bytes) -> bool:
    """Told by content, not by name: Tune's `search_gen_state-*.json` is a pickle."""
    try:
        if data[:1] == PICKLE_PROTO:
            return any(op.name == "STOP" for op, _arg, _pos in pickletools.genops(data))
        json.loads(data)
    except (ValueError, EOFError, IndexError, KeyError, UnicodeDecodeError):  # a cut stream
        return False
    return bool(data)


def _set_aside(path: ExperimentPath, data: bytes) -> None:
    """Rename `path` (holding `data`) to damaged-<name>: kept, no longer matched by Tune."""
    (path.parent / f"{DAMAGED_PREFIX}{path.name}").write_bytes(data)
    path.unlink()


def _newest_whole(experiment_dir: ExperimentPath, pattern: str, notes: list[str]
                  ) -> bool | None:
    """Set aside the newest files of `pattern` (Tune takes the greatest name, the session's
    start time) until the newest left is whole; whether one is (None: there was none)."""
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
    """Make the newest state file of each family whole before `Tuner.restore`; the notes."""
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
        # Tune restores the generator only with a searcher state (else it raises): it goes too,
        # and the searcher starts from tuner.pkl (its study, in the journal, holds every trial)
        for path in experiment_dir.glob(SEARCH_GENERATOR_STATE):
            _set_aside(path, path.read_bytes())
            notes.append(f"{path.name}: set aside with the damaged searcher state")
    return notes
