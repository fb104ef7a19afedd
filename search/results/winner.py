"""Who won a search, and the winner's complete run config as `best_config.yaml`.

The winner is the trial with the best value of the metric ever reported (Tune's
`scope="all"`), so a trial that ASHA stopped early competes with the score it actually
reached. Its config is the base with the trial's values set by the same function the
trainable trains with (`search.trial.trainable.trial_run_config`), rounding included.

Test-split numbers of the winner: `test_metrics.json`.

The winner's `best_model/` is evaluated on the test split of its run config with detr_core's
own evaluation (mAP, recall, IoU and centre-error figures), once: a `test_metrics.json` not
older than `best_model/` is reused. On a storage URI the model is evaluated from a local
download and its evaluation log uploaded beside it. When the finalists stage chose the winner,
its run's own evaluation is copied instead (`search.results.export`).

The winner's model: the checkpoint of its best step, copied to `best_model/`.

Each trial keeps the Trainer checkpoint of its best step (see `search.trial.trainable`), with a
`checkpoint_meta.json` naming step, metric and value. The copy in `best_model/` carries
`export_source.json` (which trial, which checkpoint), so a re-export of the same winner leaves
it untouched and a stale copy of another trial is never left beside a new `best_config.yaml`.
A checkpoint whose model files are incomplete (a trial killed while Tune copied it) is passed
over (`detr_core.model.model_check`); the copy is built aside and swapped in
(`detr_core.files.file_io`), so `best_model/` is never half-written. On an object store (no
folder rename) the old copy is deleted, the new one uploaded and `export_source.json` written
last, so an interrupted copy is redone by the next export.
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from detr_core.config.metric_names import is_better
from detr_core.files.errors import UserInputError
from detr_core.files.file_io import dumps_yaml, replace_folder, staging_folder
from detr_core.model.model_check import check_model_folder
from search.results.reading import TrialRecord
from search.results.warm_trials import source_spec
from search.space.spec import SearchSpec
from search.store.layout import (
    BEST_CONFIG_FILE,
    BEST_MODEL_DIR,
    CHECKPOINT_META_FILE,
    EVALUATION_LOG_FILE,
    MODEL_SOURCE_FILE,
    TEST_METRICS_FILE,
    as_float,
    as_int,
)
from search.store.storage import (
    ExperimentPath,
    UriPath,
    copy_tree,
    display_path,
    local_copy,
    read_json,
    relative_posix,
    remove_tree,
    write_json_atomic,
    write_text_atomic,
)
from search.trial.status import ERRORED
from search.trial.trainable import trial_run_config, trial_threads


def rank_trials(trials: Sequence[TrialRecord], mode: str) -> list[TrialRecord]:
    """Trials best first by their best metric; errored trials after clean ones, no value last.

    Errored trials rank behind the others because a config that crashed may crash again when
    retrained: rank 1 is always the winner (see `pick_winner`). Ties keep trial-id order.
    """

    def compare(a: TrialRecord, b: TrialRecord) -> int:
        group_a = (a.best_value is None, a.status == ERRORED)
        group_b = (b.best_value is None, b.status == ERRORED)
        if group_a != group_b:
            return -1 if group_a < group_b else 1
        if is_better(a.best_value, b.best_value, mode):
            return -1
        if is_better(b.best_value, a.best_value, mode):
            return 1
        return -1 if a.trial_id < b.trial_id else int(a.trial_id > b.trial_id)

    return sorted(trials, key=functools.cmp_to_key(compare))


def pick_winner(trials: Sequence[TrialRecord], mode: str) -> TrialRecord | None:
    """The trial with the best metric ever reported; an errored one only if no other has one."""
    ranked = rank_trials(trials, mode)
    return ranked[0] if ranked and ranked[0].best_value is not None else None


def trial_thread_count(spec: SearchSpec, trial: TrialRecord) -> int:
    """The torch threads a trial trained with: as it reported them, else its CPU share."""
    reported = [as_int(r.get("num_threads")) for r in trial.results]
    reported = [n for n in reported if n is not None]
    return reported[-1] if reported else trial_threads(spec.resources.cpus_per_trial)


def build_best_config(spec: SearchSpec, trial: TrialRecord) -> dict[str, Any]:
    """A trial's complete run config: exactly what the trainable trained it with, thread
    count included (the same config and thread count on the same machine give the same
    curve). A warm-start trial's comes from its own experiment's spec when that can be read
    (else from this search's, which trains the same run by the warm-start rules)."""
    own = source_spec(trial)
    # a trial's params are the values it trained with (`trial_values`: rounded, and made
    # absolute where the model is searched), so they are set as they are: no space
    if own is not None and trial.source_params is not None:
        return trial_run_config(own.base, {}, trial.source_params,
                                threads=trial_thread_count(own, trial))
    return trial_run_config(spec.base, {}, trial.params,
                            threads=trial_thread_count(spec, trial))


def write_best_config(
    experiment_dir: ExperimentPath, spec: SearchSpec, winner: TrialRecord
) -> tuple[dict[str, Any], ExperimentPath]:
    """Write `best_config.yaml` (atomically) with a header naming the trial and its best step."""
    config = build_best_config(spec, winner)
    path = experiment_dir / BEST_CONFIG_FILE
    origin = (f" (a warm-start trial of experiment {winner.origin}, not retrained here: "
              "this is its run config there)" if winner.origin else "")
    header = (
        f"Best run config of search `{spec.name}`, written by search/export.py.\n"
        f"Winner: trial {winner.trial_id}{origin}, best {spec.metric} = {winner.best_value!r} "
        f"({spec.mode}) at step {winner.best_step}.\n"
        f"Reproduce: python -m detr_core.train --config {display_path(path)}\n"
        f"num_threads is the trial's thread count: keep it for a bit-exact rerun on this "
        "machine."
    )
    return config, write_text_atomic(path, dumps_yaml(config, header=header))


def winner_test_metrics(
    experiment_dir: ExperimentPath, best_config: Mapping[str, Any] | None,
    best_config_path: ExperimentPath | None, model_dir: ExperimentPath | None, evaluate: bool,
) -> tuple[dict[str, Any] | None, str | None]:
    """(metrics, error): a current `test_metrics.json` is reused; else evaluate if asked.

    `test_metrics.json` is current when it is not older than `best_model/` (its
    `export_source.json`: it was computed on this very model; equal times count, file clocks
    tick coarsely). Evaluation needs a test
    split in the run config; its failure is returned, not raised, so the rest of the export
    survives it.
    """
    path = experiment_dir / TEST_METRICS_FILE
    if model_dir is None or best_config is None or best_config_path is None:
        return None, None
    if path.is_file() and path.stat().st_mtime_ns >= _model_time_ns(model_dir):
        metrics = read_json(path)
        if isinstance(metrics, dict):
            return metrics, None
    if not evaluate:
        return None, None
    try:
        with local_copy(model_dir, upload_back=True) as local_model:
            metrics = evaluate_on_test(dict(best_config), best_config_path, local_model)
    except Exception as exc:  # the export's other outputs must survive a failed evaluation
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"warning: test evaluation of {model_dir} failed: {message}", file=sys.stderr)
        return None, message
    if metrics is not None:
        write_json_atomic(path, metrics)
        metrics = read_json(path)
    return metrics, None


def _model_time_ns(model_dir: ExperimentPath) -> int:
    """When `best_model/` was copied: its `export_source.json` (folders on object stores have
    no time), else the folder's own time."""
    marker = model_dir / MODEL_SOURCE_FILE
    return (marker if marker.is_file() else model_dir).stat().st_mtime_ns


def evaluate_on_test(
    best_config: dict[str, Any], config_path: ExperimentPath, model_dir: Path
) -> dict[str, Any] | None:
    """Run detr_core's test evaluation; None when the run config has no test split.

    Imported here: detr_core.evaluate pulls in torch and transformers, which the rest
    of the
    export does not need. Their output (weight-loading bars, warnings) goes to
    `best_model/test_evaluation.log`, not to the console.
    """
    from detr_core.config.run_config import resolve_paths, run_config_from_dict
    from search.trial.trainable import output_to_file

    base = config_path.parent if isinstance(config_path, Path) else Path.cwd()
    config = resolve_paths(run_config_from_dict(best_config, source=str(config_path)), base)
    if not config.data.has_test_split:
        return None
    from detr_core.evaluate import evaluate_model

    with output_to_file(model_dir / EVALUATION_LOG_FILE):
        return dict(evaluate_model(model_dir, config, split="test"))


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
