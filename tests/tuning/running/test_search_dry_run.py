"""`search/run.py --dry-run` checks the data as the real search does on the driver (in-process).

A dry run is where a user tries a new dataset: it must refuse what the search would refuse
(exit 2, one line, nothing written) and show what it found per split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from search_helpers import write_space

SPACE = {"training_args.learning_rate": {"loguniform": [1.0e-4, 1.0e-3]}}


def _coco_space(tmp_path: Path, coco_writer: Any) -> Path:
    cats = {1: "a", 2: "b"}
    images = [{"id": 1}, {"id": 2}, {"id": 3}]
    train = coco_writer("train", images, [
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
        {"image_id": 1, "category_id": 2, "bbox": [20, 5, 10, 10]},
        {"image_id": 2, "category_id": 1, "bbox": [5, 5, 10, 10]},
        {"image_id": 2, "category_id": 1, "bbox": [30, 5, 10, 10], "iscrowd": 1}], cats)
    val = coco_writer("val", images[:1], [
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}], cats)
    overrides = {"data": {"train": {"annotations": train.annotations, "images": train.images},
                          "val": {"annotations": val.annotations, "images": val.images}}}
    space = write_space(tmp_path / "space.yaml", "dry", SPACE, num_samples=2, max_t=8,
                        extra_overrides=overrides)
    doc = yaml.safe_load(space.read_text())
    doc["base_overrides"].pop("data.synthetic")  # the COCO splits replace write_space's data
    space.write_text(yaml.safe_dump(doc, sort_keys=False))
    return space


def test_dry_run_shows_each_split(tmp_path: Path, coco_writer: Any,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from search.run import main

    space = _coco_space(tmp_path, coco_writer)
    storage = tmp_path / "results"
    assert main(["--space", str(space), "--storage", str(storage), "--dry-run"]) == 0
    out = capsys.readouterr().out
    data = out[out.index("Data:\n"):].splitlines()
    assert data[1].startswith("  train 3 images, 3 boxes (+1 crowd regions), 2 of 2 classes, "
                              "1 images without boxes (")
    assert data[2].startswith("  val   1 images, 1 boxes, 1 of 2 classes, 0 images without")
    assert not storage.exists()


@pytest.mark.parametrize("damage", ["truncated image", "box of NaN", "missing file"])
def test_dry_run_refuses_what_the_search_refuses(tmp_path: Path, coco_writer: Any,
                                                 capsys: pytest.CaptureFixture[str],
                                                 damage: str) -> None:
    import json

    from search.run import main

    space = _coco_space(tmp_path, coco_writer)
    root = tmp_path / "coco"
    if damage == "truncated image":
        image = root / "train" / "2.png"
        image.write_bytes(image.read_bytes()[:60])
        expected = f"{root / 'train.json'}: image id 2: image file {image} is a truncated"
    elif damage == "box of NaN":
        raw = json.loads((root / "val.json").read_text())
        raw["annotations"][0]["bbox"][2] = float("nan")
        (root / "val.json").write_text(json.dumps(raw))
        expected = f"{root / 'val.json'}: annotation id 1: bbox must be"
    else:
        (root / "train" / "3.png").unlink()
        expected = f"{root / 'train.json'}: image id 3: image file {root / 'train' / '3.png'} " \
                   "not found"
    storage = tmp_path / "results"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["--space", str(space), "--storage", str(storage), "--dry-run"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), captured.err
    assert "Search 'dry'" not in captured.out  # refused before the plan is printed
    assert not storage.exists()


def test_dry_run_refuses_a_base_pipeline_that_cannot_take_the_smallest_image(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The base run's crop is larger than the synthetic images: every trial would fail."""
    from search.run import main as run_main

    space = write_space(tmp_path / "space.yaml", "crop", SPACE, num_samples=2, extra_overrides={
        "augmentation.train": [{"RandomCrop": {"height": 900, "width": 900}}]})
    with pytest.raises(SystemExit) as info:
        run_main(["--space", str(space), "--storage", str(tmp_path / "results"), "--dry-run"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"error: {space}: augmentation.train: fails on image id "), err
    assert "CropSizeError" in err[0]
