"""The winner's model: the checkpoint of its best step, copied to `best_model/`.

Each trial keeps the Trainer checkpoint of its best step (see `search.trial.trainable`), with a
`checkpoint_meta.json` naming step, metric and value. The copy in `best_model/` carries
`export_source.json` (which trial, which checkpoint), so a re-export of the same winner leaves
it untouched and a stale copy of another trial is never left beside a new `best_config.yaml`.
A checkpoint whose model files are incomplete (a trial killed while Tune copied it) is passed
over (`detr_core.model.model_check`); the copy is built aside and swapped in
(`detr_core.files.atomic_files`), so `best_model/` is never half-written. On an object store (no
folder rename) the old copy is deleted, the new one uploaded and `export_source.json` written
last, so an interrupted copy is redone by the next export.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping
from typing import Any

from detr_core.config.metric_names import is_better
from detr_core.files.atomic_files import replace_folder, staging_folder
from detr_core.files.errors import UserInputError
from detr_core.model.model_check import check_model_folder
from search.results.reading import TrialRecord
from search.store.files import read_json
from search.store.layout import BEST_MODEL_DIR, CHECKPOINT_META_FILE, MODEL_SOURCE_FILE
from search.store.storage import ExperimentPath, UriPath, copy_tree, relative_posix, remove_tree
from search.store.values import as_float, as_int


def read_checkpoints(trial_dir: ExperimentPath) -> list[tuple[ExperimentPath, dict[str, Any]]]:
    """`(checkpoint dir, checkpoint_meta.json)` for every whole checkpoint of a trial, oldest
    first (one whose model files are incomplete is left out)."""
    found = []
    for ckpt in sorted(trial_dir.glob("checkpoint_*")):
        meta = read_json(ckpt / CHECKPOINT_META_FILE)
        if isinstance(meta, dict) and _is_whole(model_folder(ckpt, meta)):
            found.append((ckpt, meta))
    return found


def _is_whole(folder: ExperimentPath) -> bool:
    """False (with a warning) for a local model folder whose files are incomplete; a folder on
    an object store was uploaded file by file, whole files only, and is taken as it is."""
    if isinstance(folder, UriPath) or not (folder / "config.json").is_file():
        return True  # not a model folder at all: `copy_winner_model` warns about it
    try:
        check_model_folder(folder)
    except UserInputError as exc:
        print(f"warning: skipping checkpoint {folder}: {exc.problem}", file=sys.stderr)
        return False
    return True


def select_checkpoint(
    trial: TrialRecord, mode: str
) -> tuple[ExperimentPath, dict[str, Any]] | None:
    """The checkpoint of the trial's best step; else the one whose meta value is best.

    The fallback covers a `CheckpointConfig(num_to_keep=...)` that deleted the best-step
    checkpoint. The newest checkpoint wins a tie (a resumed trial may report a step twice).
    """
    checkpoints = read_checkpoints(trial.path)
    at_best = [c for c in checkpoints if as_int(c[1].get("step")) == trial.best_step]
    if trial.best_step is not None and at_best:
        return at_best[-1]
    chosen = None
    for ckpt in reversed(checkpoints):
        value = as_float(ckpt[1].get("value"))
        if is_better(value, as_float(chosen[1].get("value")) if chosen else None, mode):
            chosen = ckpt
    return chosen


def model_folder(checkpoint_dir: ExperimentPath, meta: Mapping[str, Any]) -> ExperimentPath:
    """The `save_pretrained` folder inside a checkpoint, as its meta names it."""
    return checkpoint_dir / str(meta.get("model_dir") or ".")


def copy_best_model(experiment_dir: ExperimentPath, source: ExperimentPath,
                    provenance: dict[str, Any]) -> ExperimentPath:
    """Copy `source` to `best_model/`, replacing an older copy in (nearly) one step.

    The copy goes to a temp folder first and is renamed into place, so a crash never leaves a
    half-copied `best_model/`. An existing copy of the very same checkpoint is kept as it is:
    its `export_source.json`'s timestamp tells `test_metrics.json` whether it is current.
    """
    dest = experiment_dir / BEST_MODEL_DIR
    if read_json(dest / MODEL_SOURCE_FILE) == provenance:
        return dest
    if not (source / "config.json").is_file():
        print(f"warning: {source} has no config.json; copying it anyway", file=sys.stderr)
    if isinstance(dest, UriPath):
        remove_tree(dest)
        copy_tree(source, dest)
        (dest / MODEL_SOURCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
        return dest
    tmp = staging_folder(dest)
    shutil.copytree(source, tmp, dirs_exist_ok=True)
    (tmp / MODEL_SOURCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return replace_folder(tmp, dest)


def copy_winner_model(
    experiment_dir: ExperimentPath, winner: TrialRecord, mode: str,
    root: ExperimentPath | None = None,
) -> tuple[ExperimentPath | None, int | None, str | None]:
    """Find the winner's best-step checkpoint and copy its model; (dir, step, source) or Nones.
    The source is named relative to `root` (default: the folder holding the trial's).

    A stale `best_model/` of another trial is removed when the winner has no checkpoint, so
    the folder never disagrees with `best_config.yaml`.
    """
    chosen = select_checkpoint(winner, mode)
    if chosen is None:
        stale = experiment_dir / BEST_MODEL_DIR
        if (stale / MODEL_SOURCE_FILE).is_file():
            remove_tree(stale)
        print(f"warning: trial {winner.trial_id} has no checkpoint with {CHECKPOINT_META_FILE}; "
              f"no {BEST_MODEL_DIR}/ written", file=sys.stderr)
        return None, None, None
    ckpt_dir, meta = chosen
    source = model_folder(ckpt_dir, meta)
    if not source.is_dir():
        print(f"warning: {ckpt_dir / CHECKPOINT_META_FILE} names model_dir {source}, which is "
              f"not a folder; no {BEST_MODEL_DIR}/ written", file=sys.stderr)
        return None, None, None
    relative = relative_posix(source, root if root is not None else winner.path.parent)
    provenance = {
        "trial_id": winner.trial_id,
        "checkpoint": relative,
        "step": as_int(meta.get("step")),
        "metric": meta.get("metric"),
        "value": as_float(meta.get("value")),
    }
    return copy_best_model(experiment_dir, source, provenance), provenance["step"], relative
