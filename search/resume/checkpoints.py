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
(`search.results.best_model.read_checkpoints`, the trial's own newer work), or at none (the trial
starts over) when it has none. The state is decoded and re-encoded by Ray's own
`_TrainingRunMetadata`, so nothing but the checkpoint reference changes.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

from search.results.best_model import read_checkpoints
from search.store.files import write_text_atomic
from search.store.storage import ExperimentPath

FINISHED = ("TERMINATED",)


def _replacement(trial_dir: ExperimentPath, manager: Any, latest: Any) -> tuple[Any, str]:
    """(the training result to resume from, or None; its folder name for the note)."""
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult

    found = read_checkpoints(trial_dir)
    if not found:
        return None, "no checkpoint: it starts over"
    folder = found[-1][0]
    path = str(PurePosixPath(latest.checkpoint.path).parent / folder.name)
    kept = [r for r in manager._checkpoint_results if r.checkpoint.path == path]
    metrics = kept[0].metrics if kept else {}
    checkpoint = Checkpoint(path, filesystem=latest.checkpoint.filesystem)
    return _TrainingResult(checkpoint=checkpoint, metrics=metrics), folder.name


def repoint_deleted_checkpoints(experiment_dir: ExperimentPath, state_file: ExperimentPath
                                ) -> list[str]:
    """Point every unfinished trial of `state_file` whose latest checkpoint was deleted at
    the newest one left; the state is rewritten (atomically) only when one changed. One note
    per trial changed."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    state = json.loads(state_file.read_text())
    notes = []
    for entry in state.get("trial_data", []):
        try:
            trial = json.loads(entry[0])
            metadata = _TrainingRunMetadata.from_json_state(entry[1])
        except Exception:  # a layout this Ray does not write: left to Tune to judge
            continue
        if not isinstance(trial, dict) or trial.get("status") in FINISHED:
            continue
        manager = metadata.checkpoint_manager
        latest = manager.latest_checkpoint_result if manager else None
        if latest is None or latest.checkpoint is None:
            continue
        gone = PurePosixPath(latest.checkpoint.path)
        trial_dir = experiment_dir / gone.parent.name
        if (trial_dir / gone.name).exists():
            continue
        result, name = _replacement(trial_dir, manager, latest)
        manager._checkpoint_results = [r for r in manager._checkpoint_results
                                       if (trial_dir / PurePosixPath(r.checkpoint.path).name)
                                       .exists()]
        manager._latest_checkpoint_result = result
        metadata.invalidate_cache()
        entry[1] = metadata.get_json_state()
        notes.append(f"trial {trial.get('trial_id')}: its saved checkpoint {gone.name} was "
                     "deleted by Tune before its killed session saved the next; resuming from "
                     f"{name}")
    if notes:
        write_text_atomic(state_file, json.dumps(state, indent=2))
    return notes
