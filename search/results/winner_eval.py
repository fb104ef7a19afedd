"""Test-split numbers of the winner: `test_metrics.json`.

The winner's `best_model/` is evaluated on the test split of its run config with detr_core's
own evaluation (mAP, recall, IoU and centre-error figures), once: a `test_metrics.json` not
older than `best_model/` is reused. On a storage URI the model is evaluated from a local
download and its evaluation log uploaded beside it. When the finalists stage chose the winner,
its run's own evaluation is copied instead (`search.results.export`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from search.store.files import read_json, write_json_atomic
from search.store.layout import EVALUATION_LOG_FILE, MODEL_SOURCE_FILE, TEST_METRICS_FILE
from search.store.storage import ExperimentPath, local_copy


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
    from detr_core.config.config_paths import resolve_paths
    from detr_core.config.run_config import run_config_from_dict
    from search.trial.trial_output import output_to_file

    base = config_path.parent if isinstance(config_path, Path) else Path.cwd()
    config = resolve_paths(run_config_from_dict(best_config, source=str(config_path)), base)
    if not config.data.has_test_split:
        return None
    from detr_core.evaluate import evaluate_model

    with output_to_file(model_dir / EVALUATION_LOG_FILE):
        return dict(evaluate_model(model_dir, config, split="test"))
