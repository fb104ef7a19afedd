"""All randomness of a run follows from its `seed`.

Two runs of one config (augmentation on, two DataLoader worker processes, same thread count)
give the same evaluation curve, read back from each run's `eval_history.jsonl`; a run with
another seed does not. What varies with the seed: the model's initial weights (the tiny preset
from random weights here), the order of the data, the augmentation draws.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest

from detr_core.config.run_config import run_config_from_dict
from detr_core.train import train_run
from detr_core.training.events import read_eval_history

pytestmark = pytest.mark.slow

CURVE_KEYS = ("eval_loss", "eval_loss_bbox", "eval_loss_iou", "eval_loss_ce", "eval_map_50",
              "eval_recall", "train_loss", "learning_rate")


def _run(raw: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    config = run_config_from_dict(raw, source="test")
    train_run(config, folder, evaluate_test=False)
    return read_eval_history(folder)


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=0, abs_tol=1e-6)


@pytest.fixture(scope="module")
def curves(tmp_path_factory: pytest.TempPathFactory,
           tiny_run_template: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    raw = copy.deepcopy(tiny_run_template)
    raw["seed"] = 7
    raw["data"]["synthetic"]["num_test"] = 0
    raw["training_args"].update(max_steps=6, logging_steps=3, dataloader_num_workers=2)
    raw["augmentation"] = {"train": [
        {"HorizontalFlip": {"p": 0.5}},
        {"ColorJitter": {"brightness": 0.3, "contrast": 0.3, "hue": 0.05, "p": 0.8}},
        {"Affine": {"scale": [0.8, 1.2], "translate_percent": [-0.1, 0.1], "p": 0.5}},
    ]}
    root = tmp_path_factory.mktemp("repro")
    other = copy.deepcopy(raw)
    other["seed"] = 8
    return {"first": _run(raw, root / "first"), "again": _run(raw, root / "again"),
            "other_seed": _run(other, root / "other")}


def test_same_config_and_seed_give_the_same_curve(curves: dict[str, list]) -> None:
    first, again = curves["first"], curves["again"]
    assert [r["step"] for r in first] == [r["step"] for r in again] == [3, 6]
    for a, b in zip(first, again, strict=True):
        for key in CURVE_KEYS:
            assert _same(a[key], b[key]), (a["step"], key, a[key], b[key])


def test_another_seed_gives_another_curve(curves: dict[str, list]) -> None:
    first, other = curves["first"], curves["other_seed"]
    differing = [(a["step"], key) for a, b in zip(first, other, strict=True)
                 for key in ("eval_loss", "train_loss") if not _same(a[key], b[key])]
    assert len(differing) == 2 * len(first), differing
