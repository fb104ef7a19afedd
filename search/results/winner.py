"""Who won a search: its `best_config.yaml`, `best_model/` and test metrics.

The winner has the best value ever reported (Tune's `scope="all"`: a trial ASHA stopped early
competes with what it reached). `best_model/` is its best step's checkpoint with an
`export_source.json` (trial, checkpoint), so a re-export of the same winner leaves it untouched;
it is built aside and swapped in whole (on an object store: old copy deleted, new one uploaded,
`export_source.json` last), so an interrupted copy is redone, never used half-written.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from detr_core.files.errors import UserInputError
from detr_core.files.file_io import dumps_yaml, replace_folder, staging_folder
from detr_core.model.model_check import check_model_folder
from search.results.reading import TrialRecord, signed
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
    """Trials best first; errored ones after clean ones (a config that crashed may crash again,
    and rank 1 is the winner), no value last; ties in trial-id order."""
    return sorted(trials, key=lambda t: (t.best_value is None, t.status == ERRORED,
                                         signed(t.best_value, mode), t.trial_id))


def pick_winner(trials: Sequence[TrialRecord], mode: str) -> TrialRecord | None:
    """The trial with the best metric ever reported; an errored one only if no other has one."""
    ranked = rank_trials(trials, mode)
    return ranked[0] if ranked and ranked[0].best_value is not None else None


def trial_thread_count(spec: SearchSpec, trial: TrialRecord) -> int:
    """The torch threads a trial trained with: as it reported them, else its CPU share."""
    reported = [n for r in trial.results if (n := as_int(r.get("num_threads"))) is not None]
    return reported[-1] if reported else trial_threads(spec.resources.cpus_per_trial)


def build_best_config(spec: SearchSpec, trial: TrialRecord) -> dict[str, Any]:
    """A trial's complete run config, thread count included: exactly what it trained with. A
    warm-start trial's comes from its own experiment's spec when readable."""
    own = source_spec(trial)
    # params are the values it trained with (rounded, absolute): set as they are, no space
    if own is not None and trial.source_params is not None:
        spec, params = own, trial.source_params
    else:
        params = trial.params
    return trial_run_config(spec.base, {}, params, threads=trial_thread_count(spec, trial))


def write_best_config(
    experiment_dir: ExperimentPath, spec: SearchSpec, winner: TrialRecord
) -> tuple[dict[str, Any], ExperimentPath]:
    """Write `best_config.yaml` (atomically) with a header naming the trial and its best step."""
    origin = (f" (a warm-start trial of experiment {winner.origin}, not retrained here: "
              "this is its run config there)" if winner.origin else "")
    return write_config_file(
        experiment_dir, spec, build_best_config(spec, winner), "trial",
        f"Winner: trial {winner.trial_id}{origin}, best {spec.metric} = {winner.best_value!r} "
        f"({spec.mode}) at step {winner.best_step}.")


def write_config_file(experiment_dir: ExperimentPath, spec: SearchSpec, config: dict[str, Any],
                      run: str, winner: str) -> tuple[dict[str, Any], ExperimentPath]:
    """`best_config.yaml` under a header: the search, the `winner` lines, how to reproduce."""
    path = experiment_dir / BEST_CONFIG_FILE
    header = (
        f"Best run config of search `{spec.name}`, written by search/export.py.\n{winner}\n"
        f"Reproduce: python -m detr_core.train --config {display_path(path)}\n"
        f"num_threads is the {run}'s thread count: keep it for a bit-exact rerun on this machine."
    )
    return config, write_text_atomic(path, dumps_yaml(config, header=header))


def winner_test_metrics(
    experiment_dir: ExperimentPath, best_config: Mapping[str, Any] | None,
    best_config_path: ExperimentPath | None, model_dir: ExperimentPath | None, evaluate: bool,
) -> tuple[dict[str, Any] | None, str | None]:
    """(metrics, error) of `best_model/` on the test split, evaluated once: a `test_metrics.json`
    not older than its `export_source.json` is reused, else evaluated if asked. A failure is
    returned, not raised: the rest of the export survives."""
    path = experiment_dir / TEST_METRICS_FILE
    if model_dir is None or best_config is None or best_config_path is None:
        return None, None
    marker = model_dir / MODEL_SOURCE_FILE  # equal times count: file clocks tick coarsely
    if path.is_file() and (path.stat().st_mtime_ns
                           >= (marker if marker.is_file() else model_dir).stat().st_mtime_ns):
        metrics = read_json(path)
        if isinstance(metrics, dict):
            return metrics, None
    if not evaluate:
        return None, None
    try:
        with local_copy(model_dir, upload_back=True) as local_model:
            metrics = evaluate_on_test(dict(best_config), best_config_path, local_model)
    except Exception as exc:
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"warning: test evaluation of {model_dir} failed: {message}", file=sys.stderr)
        return None, message
    if metrics is not None:
        write_json_atomic(path, metrics)
        metrics = read_json(path)
    return metrics, None


def evaluate_on_test(
    best_config: dict[str, Any], config_path: ExperimentPath, model_dir: Path
) -> dict[str, Any] | None:
    """detr_core's test evaluation (imported here: torch and transformers), its output in
    `best_model/test_evaluation.log`; None when the run config has no test split."""
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
    """`(checkpoint dir, checkpoint_meta.json)` of every whole checkpoint, oldest first (a local
    model folder with incomplete files is skipped with a warning)."""
    found = []
    for ckpt in sorted(trial_dir.glob("checkpoint_*")):
        meta = read_json(ckpt / CHECKPOINT_META_FILE)
        if not isinstance(meta, dict):
            continue
        folder = model_folder(ckpt, meta)
        # without config.json it is no model folder at all: `copy_winner_model` warns about it
        if not isinstance(folder, UriPath) and (folder / "config.json").is_file():
            try:
                check_model_folder(folder)
            except UserInputError as exc:
                print(f"warning: skipping checkpoint {folder}: {exc.problem}", file=sys.stderr)
                continue
        found.append((ckpt, meta))
    return found


def select_checkpoint(trial: TrialRecord,
                      mode: str) -> tuple[ExperimentPath, dict[str, Any]] | None:
    """The checkpoint of the trial's best step; else (`num_to_keep` deleted it) the one whose
    meta value is best, the newest on a tie (a resumed trial may report a step twice)."""
    checkpoints = read_checkpoints(trial.path)
    at_best = [c for c in checkpoints if as_int(c[1].get("step")) == trial.best_step]
    if trial.best_step is not None and at_best:
        return at_best[-1]
    valued = [c for c in reversed(checkpoints) if as_float(c[1].get("value")) is not None]
    return min(valued, key=lambda c: signed(as_float(c[1].get("value")), mode), default=None)


def model_folder(checkpoint_dir: ExperimentPath, meta: Mapping[str, Any]) -> ExperimentPath:
    """The `save_pretrained` folder inside a checkpoint, as its meta names it."""
    return checkpoint_dir / str(meta.get("model_dir") or ".")


def copy_winner_model(
    experiment_dir: ExperimentPath, winner: TrialRecord, mode: str,
    root: ExperimentPath | None = None,
) -> tuple[ExperimentPath | None, int | None, str | None]:
    """Copy the winner's best-step model to `best_model/`: (dir, step, source relative to `root`,
    default the trial's parent) or Nones, a stale `best_model/` then removed."""
    chosen = select_checkpoint(winner, mode)
    dest = experiment_dir / BEST_MODEL_DIR
    if chosen is None:
        if (dest / MODEL_SOURCE_FILE).is_file():
            remove_tree(dest)
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
    step = as_int(meta.get("step"))
    provenance = {"trial_id": winner.trial_id, "checkpoint": relative, "step": step,
                  "metric": meta.get("metric"), "value": as_float(meta.get("value"))}
    # the very same checkpoint is kept as it is: its `export_source.json`'s time tells
    # `test_metrics.json` whether it is current
    if read_json(dest / MODEL_SOURCE_FILE) == provenance:
        return dest, step, relative
    if not (source / "config.json").is_file():
        print(f"warning: {source} has no config.json; copying it anyway", file=sys.stderr)
    text = json.dumps(provenance, indent=2) + "\n"
    if isinstance(dest, UriPath):
        remove_tree(dest)
        copy_tree(source, dest)
        (dest / MODEL_SOURCE_FILE).write_text(text)
        return dest, step, relative
    tmp = staging_folder(dest)
    shutil.copytree(source, tmp, dirs_exist_ok=True)
    (tmp / MODEL_SOURCE_FILE).write_text(text)
    return replace_folder(tmp, dest), step, relative
