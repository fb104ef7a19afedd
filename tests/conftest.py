"""Shared fixtures: an isolated dataset cache, COCO datasets written to disk, tiny run configs.

Everything here is generic on purpose so any test module may reuse it:

- every session gets its own `DETR_SEARCH_CACHE` (tests never write to ~/.cache) and runs with
  the Hugging Face Hub offline (nothing may be downloaded);
- `coco_writer` writes a real COCO split (JSON + PNG files, any PIL mode) under `tmp_path`;
- `tiny_run_dict` is a run-config mapping that trains in seconds on a tiny synthetic dataset.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Past the last test, leave without the interpreter's teardown of native libraries.

    The suite starts and stops Ray several times in this one process (in-process searches,
    the replay tests) and runs torch's thread pools beside it, which no product command does;
    the teardown of those libraries at interpreter exit crashed once in CI after every test
    had passed (`839 passed ... Segmentation fault`). An exit handler registered now runs
    first at exit, after pytest has printed and cleaned up everything, and ends the process
    with pytest's own status. A crash during the tests still fails the run, with a stack
    (`make test` runs Python with `-X faulthandler`).
    """
    def leave() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(session.exitstatus))  # read at exit: a later sessionfinish may change it

    atexit.register(leave)


# Before any test module imports transformers / huggingface_hub: never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# A run that trains for a handful of optimizer steps on a tiny synthetic dataset (seconds).
TINY_RUN: dict[str, Any] = {
    "seed": 42,
    "num_threads": 2,
    "iou_loss": "giou",
    "data": {"synthetic": {"num_train": 32, "num_val": 8, "num_test": 8, "image_size": 64}},
    "model": {"preset": "tiny", "image_size": 64},
    "training_args": {
        "max_steps": 6,
        "logging_steps": 2,
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
    },
    "evaluation": {"batch_size": 8},
}


@pytest.fixture(scope="session", autouse=True)
def isolated_dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A per-session `DETR_SEARCH_CACHE` (synthetic datasets land here, not in ~/.cache).

    Set in `os.environ` so subprocesses started by tests (the CLIs) inherit it too.
    """
    cache = tmp_path_factory.mktemp("detr-search-cache")
    previous = os.environ.get("DETR_SEARCH_CACHE")
    os.environ["DETR_SEARCH_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("DETR_SEARCH_CACHE", None)
    else:
        os.environ["DETR_SEARCH_CACHE"] = previous


@pytest.fixture(scope="session")
def tiny_run_template() -> dict[str, Any]:
    """`TINY_RUN` for module- or session-scoped fixtures: deep-copy it before changing it."""
    return copy.deepcopy(TINY_RUN)


@pytest.fixture
def tiny_run_dict(tiny_run_template: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy of `TINY_RUN`: a valid run-config mapping that trains in seconds."""
    return copy.deepcopy(tiny_run_template)


def write_image(path: Path, width: int, height: int, mode: str = "RGB", seed: int = 0) -> Path:
    """A real image file of `width` x `height` in PIL `mode` (format from the suffix)."""
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    if channels == 1:
        pixels = pixels[..., 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)
    return path


def categories(ids_and_names: dict[int, str] | Sequence[int]) -> list[dict[str, Any]]:
    """COCO `categories` from `{id: name}` (or ids alone, named `c<id>`)."""
    if not isinstance(ids_and_names, dict):
        ids_and_names = {i: f"c{i}" for i in ids_and_names}
    return [{"id": i, "name": n, "supercategory": "thing"} for i, n in ids_and_names.items()]


class CocoWriter:
    """Writes COCO splits under one root: `<root>/<split>.json` and `<root>/<split>/*.png`.

    `images` are COCO image records; two extra keys are consumed and not written to the JSON:
    `mode` (PIL mode of the file, default RGB) and `write_file` (False: leave the file out).
    `file_name`, `width` and `height` default to `<id>.png`, 64 and 48.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(
        self,
        split: str,
        images: Sequence[dict[str, Any]],
        annotations: Sequence[dict[str, Any]],
        cats: list[dict[str, Any]] | dict[int, str] | Sequence[int],
        extra: dict[str, Any] | None = None,
    ) -> Any:
        from detr_core.config.run_config import SplitPaths

        image_dir = self.root / split
        image_dir.mkdir(parents=True, exist_ok=True)
        records = []
        for image in images:
            record = dict(image)
            mode = record.pop("mode", "RGB")
            write_file = record.pop("write_file", True)
            record.setdefault("file_name", f"{record['id']}.png")
            record.setdefault("width", 64)
            record.setdefault("height", 48)
            if write_file:  # a declared size that is not positive still gets a 1x1 file
                width, height = (max(1, int(v)) if isinstance(v, int | float) else 1
                                 for v in (record["width"], record["height"]))
                write_image(image_dir / record["file_name"], width, height, mode,
                            seed=int(record["id"]) if isinstance(record["id"], int) else 0)
            records.append(record)
        anns = []
        for index, ann in enumerate(annotations, start=1):
            record = {"id": index, "iscrowd": 0, **ann}
            if "bbox" in record and "area" not in record and _is_box(record["bbox"]):
                record["area"] = float(record["bbox"][2] * record["bbox"][3])
            anns.append(record)
        cat_list = cats if _is_category_list(cats) else categories(cats)
        data = {"images": records, "annotations": anns, "categories": cat_list, **(extra or {})}
        annotation_file = self.root / f"{split}.json"
        annotation_file.write_text(json.dumps(data), encoding="utf-8")
        return SplitPaths(annotations=str(annotation_file), images=str(image_dir))


def _is_box(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(
        isinstance(v, int | float) for v in value)


def _is_category_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


@pytest.fixture
def coco_writer(tmp_path: Path) -> CocoWriter:
    """Write COCO splits under `tmp_path/coco`: `coco_writer(split, images, anns, cats)`."""
    return CocoWriter(tmp_path / "coco")


@pytest.fixture
def image_writer() -> Callable[..., Path]:
    """`image_writer(path, width, height, mode="RGB")`: a real image file of random pixels."""
    return write_image


@pytest.fixture(scope="module")
def rt_detr_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny RT-DETR `save_pretrained` folder (no recipe.json: RT-DETR's published recipe)."""
    from detr_core.config.run_config import ModelConfig
    from detr_core.data.coco import LabelMap
    from detr_core.model.build import build_image_processor, build_model

    folder = tmp_path_factory.mktemp("rt_detr")
    cfg = ModelConfig(preset="tiny", family="rt_detr")
    model = build_model(cfg, LabelMap(category_ids=(0, 1), names=("a", "b")), "giou", False)
    model.save_pretrained(folder)
    build_image_processor(cfg).save_pretrained(folder)
    return folder
