"""Real-world COCO exports, read as detectron2, mmdet and Ultralytics read them.

Phone photos with an EXIF orientation, 16-bit and other PIL modes, zero-size boxes (CVAT,
Label Studio), Roboflow's placeholder category, crowd regions, names a macOS zip decomposed,
images with more objects than queries, and predict's output names. Every file is made here.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from detr_core.config.run_config import DataConfig, ModelConfig
from detr_core.data.coco import load_coco_split
from detr_core.data.dataset import CocoDetectionDataset, DetrCollator
from detr_core.data.images import load_rgb, to_rgb8
from detr_core.data.prepare import crowded_images_note, prepare_data, split_summary
from detr_core.evaluation.metrics import decode_targets
from detr_core.files.errors import UserInputError
from detr_core.model.build import build_image_processor, num_queries_of
from detr_core.predict import drawn_names

ORIENTATION = 0x0112
BOX = [6, 34, 20, 18]  # x, y, w, h in the *displayed* frame (40 wide, 60 tall)


def displayed_picture() -> np.ndarray:
    """40x60 (w x h) black picture with one bright object at BOX."""
    pixels = np.zeros((60, 40, 3), dtype=np.uint8)
    x, y, w, h = BOX
    pixels[y:y + h, x:x + w] = 255
    return pixels


def save_phone_photo(path: Path, orientation: int) -> None:
    """Store `displayed_picture` as a camera would: the pixels turned back, an EXIF tag saying
    how to show them (what `exif_transpose` undoes)."""
    shown = Image.fromarray(displayed_picture())
    stored = {6: shown.transpose(Image.Transpose.ROTATE_90),
              8: shown.transpose(Image.Transpose.ROTATE_270),
              3: shown.transpose(Image.Transpose.ROTATE_180)}[orientation]
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(path, quality=95, exif=exif.tobytes())


def share_inside_box(image: np.ndarray, box: list[float]) -> float:
    """The share of the bright pixels that lie inside `box`."""
    bright = image.mean(axis=2) > 128
    x, y, w, h = (int(v) for v in box)
    return float(bright[y:y + h, x:x + w].sum() / max(1, bright.sum()))


def write_split(root: Path, name: str, images: list[dict], annotations: list[dict],
                categories: list[dict]) -> Any:
    from detr_core.config.run_config import SplitPaths

    path = root / f"{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}), encoding="utf-8")
    return SplitPaths(annotations=str(path), images=str(root / name))


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_exif_photo_is_read_upright_with_its_boxes(tmp_path: Path, orientation: int,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Boxes drawn on the displayed photo cover the object in what training reads (before:
    0.08 of the object inside its box for a sideways photo)."""
    save_phone_photo(tmp_path / "train" / "photo.jpg", orientation)
    cats = [{"id": 1, "name": "thing"}]
    split = write_split(tmp_path, "train", [
        {"id": 1, "file_name": "photo.jpg", "width": 40, "height": 60}],
        [{"id": 1, "image_id": 1, "category_id": 1, "bbox": BOX}], cats)
    data = prepare_data(DataConfig(train=split, val=split))
    image, target = CocoDetectionDataset(data.train, data.label_map, None)[0]
    assert image.shape == (60, 40, 3)
    assert share_inside_box(image, target["annotations"][0]["bbox"]) > 0.95
    assert share_inside_box(np.array(Image.open(tmp_path / "train" / "photo.jpg")), BOX) < 0.5
    assert (f"note: train ({split.annotations}): of 1 images, 1 turned upright by their EXIF "
            "orientation") in capsys.readouterr().err


def test_exif_photo_whose_record_has_the_stored_size_is_refused(tmp_path: Path) -> None:
    save_phone_photo(tmp_path / "train" / "photo.jpg", 6)
    split = write_split(tmp_path, "train", [
        {"id": 7, "file_name": "photo.jpg", "width": 60, "height": 40}], [],
        [{"id": 1, "name": "thing"}])
    with pytest.raises(UserInputError) as info:
        load_coco_split(split)
    message = str(info.value)
    assert message.startswith(f"{split.annotations}: image id 7: image file ")
    assert "is 40x60 pixels as displayed (EXIF orientation 6; stored 60x40)" in message
    assert "the record has the stored size" in message


def test_sixteen_bit_png_keeps_its_contrast(tmp_path: Path) -> None:
    """A thermal camera's 16-bit frame (values 1000..1400): object bright, background dark,
    not both white as `convert("RGB")` makes them."""
    values = np.full((30, 40), 1000, dtype=np.uint16)
    values[10:20, 5:15] = 1400
    path = tmp_path / "thermal.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as stored:
        assert stored.mode.startswith("I")
        assert np.array(stored.convert("RGB")).min() == 255  # what the old loader saw
    pixels = load_rgb(path)
    assert pixels.shape == (30, 40, 3) and pixels.dtype == np.uint8
    assert pixels[12, 8].tolist() == [255, 255, 255]
    assert pixels[25, 30].tolist() == [0, 0, 0]


@pytest.mark.parametrize("mode", ["F", "I", "LA", "PA", "P-transparent", "CMYK", "1", "YCbCr"])
def test_every_mode_becomes_8_bit_rgb_with_its_content(mode: str) -> None:
    """A bright square on a dark ground survives every mode's decoding."""
    gray = np.full((20, 20), 30, dtype=np.uint8)
    gray[5:15, 5:15] = 220
    if mode == "F":
        image = Image.fromarray(gray.astype(np.float32) / 255.0, "F")
    elif mode == "I":
        image = Image.fromarray(gray.astype(np.int32) * 1000, "I")
    elif mode == "LA":
        image = Image.merge("LA", [Image.fromarray(gray), Image.new("L", (20, 20), 255)])
    elif mode in ("PA", "P-transparent"):
        image = Image.fromarray(np.stack([gray] * 3, axis=2)).convert("P")
        if mode == "PA":
            image = image.convert("PA")
        else:
            image.info["transparency"] = 255  # a palette index no pixel uses
    elif mode == "1":
        image = Image.fromarray(gray).point(lambda v: 255 if v > 128 else 0).convert("1")
    else:
        image = Image.fromarray(np.stack([gray] * 3, axis=2)).convert(mode)
    rgb = np.asarray(to_rgb8(image))
    assert rgb.shape == (20, 20, 3) and rgb.dtype == np.uint8
    assert rgb[10, 10].mean() > rgb[1, 1].mean() + 100, mode


def test_degenerate_boxes_are_dropped_with_one_line(tmp_path: Path, image_writer: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    image_writer(tmp_path / "train" / "1.png", 64, 48)
    cats = [{"id": 1, "name": "a"}]
    anns = [{"id": 11, "image_id": 1, "category_id": 1, "bbox": [4, 4, 10, 10]},
            {"id": 12, "image_id": 1, "category_id": 1, "bbox": [4, 4, 0, 10]},     # zero wide
            {"id": 13, "image_id": 1, "category_id": 1, "bbox": [4, 4, 10, -2]},    # negative
            {"id": 14, "image_id": 1, "category_id": 1, "bbox": [70, 10, 5, 5]}]    # outside
    split = write_split(tmp_path, "train", [
        {"id": 1, "file_name": "1.png", "width": 64, "height": 48}], anns, cats)
    data = prepare_data(DataConfig(train=split, val=split))
    assert data.train.dropped_boxes == [12, 13, 14]
    assert sorted(data.train.coco.anns) == [11]
    _, target = CocoDetectionDataset(data.train, data.label_map, None)[0]
    assert len(target["annotations"]) == 1
    err = capsys.readouterr().err
    assert (f"warning: train ({split.annotations}): 3 boxes with no area (zero width or height, "
            "or outside their image) dropped: annotation ids 12, 13, 14") in err
    # the same records in a search trial (index only) train on the same boxes
    assert sorted(load_coco_split(split, validate=False).coco.anns) == [11]


def test_roboflow_placeholder_category_is_left_out(tmp_path: Path, image_writer: Any,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Roboflow: category 0 named after the project (supercategory `none`) that no annotation
    uses, the supercategory of every real class."""
    cats = [{"id": 0, "name": "parts-xyz", "supercategory": "none"},
            {"id": 1, "name": "bolt", "supercategory": "parts-xyz"},
            {"id": 2, "name": "nut", "supercategory": "parts-xyz"}]
    for name in ("train", "valid"):
        image_writer(tmp_path / name / "1.png", 64, 48)
    image = [{"id": 1, "file_name": "1.png", "width": 64, "height": 48}]
    train = write_split(tmp_path, "train", image, [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9]},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 20, 9, 9]}], cats)
    val = write_split(tmp_path, "valid", image, [
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 1, 9, 9]}], cats)
    data = prepare_data(DataConfig(train=train, val=val))
    assert data.label_map.names == ("bolt", "nut")
    assert [data.label_map.category_of(k) for k in (0, 1)] == [1, 2]  # original ids kept
    assert ("note: category 0 'parts-xyz' is used by no annotation and is the supercategory "
            "of all the others (Roboflow's placeholder): left out of the classes"
            ) in capsys.readouterr().err
    # an unused category that is nobody's supercategory is a real (empty) class: kept
    cats[0]["name"] = "washer"
    for path in (train, val):
        raw = json.loads(Path(path.annotations).read_text())
        raw["categories"] = cats
        Path(path.annotations).write_text(json.dumps(raw))
    assert prepare_data(DataConfig(train=train, val=val)).label_map.names == (
        "washer", "bolt", "nut")


def test_category_used_in_val_but_not_train_is_named(coco_writer: Any,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    cats = {1: "a", 2: "b"}
    train = coco_writer("train", [{"id": 1}], [{"image_id": 1, "category_id": 1,
                                                "bbox": [1, 1, 9, 9]}], cats)
    val = coco_writer("val", [{"id": 1}], [{"image_id": 1, "category_id": 2,
                                            "bbox": [1, 1, 9, 9]}], cats)
    prepare_data(DataConfig(train=train, val=val))
    assert (f"warning: val ({val.annotations}) has objects of categories no train annotation "
            "uses: 2 'b'; the model cannot learn them") in capsys.readouterr().err


def test_name_decomposed_by_a_macos_zip_is_found(tmp_path: Path, image_writer: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    composed = unicodedata.normalize("NFC", "café/Müller.png")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    image_writer(tmp_path / "train" / decomposed, 64, 48)
    split = write_split(tmp_path, "train", [
        {"id": 3, "file_name": composed, "width": 64, "height": 48}],
        [{"id": 1, "image_id": 3, "category_id": 1, "bbox": [1, 1, 9, 9]}],
        [{"id": 1, "name": "a"}])
    data = prepare_data(DataConfig(train=split, val=split))
    assert data.train.coco.imgs[3]["file_name"] == decomposed
    image, _ = CocoDetectionDataset(data.train, data.label_map, None)[0]
    assert image.shape == (48, 64, 3)
    err = capsys.readouterr().err
    assert f"warning: train ({split.annotations}): 1 file name match" in err
    assert "only after normalising Unicode, letter case or `\\` (image id 3" in err
    assert load_coco_split(split, validate=False).coco.imgs[3]["file_name"] == decomposed


def test_names_differing_by_case_or_windows_separators_are_found(
        tmp_path: Path, image_writer: Any) -> None:
    image_writer(tmp_path / "train" / "Sub" / "IMG_1.JPG", 64, 48)
    image_writer(tmp_path / "train" / "sub2" / "b.png", 64, 48)
    image_writer(tmp_path / "train" / "dup.png", 64, 48)
    image_writer(tmp_path / "train" / "DUP.png", 64, 48)
    records = [{"id": 1, "file_name": "sub/img_1.jpg", "width": 64, "height": 48},
               {"id": 2, "file_name": "sub2\\b.png", "width": 64, "height": 48}]
    split = write_split(tmp_path, "train", records, [], [{"id": 1, "name": "a"}])
    found = load_coco_split(split)
    assert found.coco.imgs[1]["file_name"] == "Sub/IMG_1.JPG"
    assert found.coco.imgs[2]["file_name"] == "sub2/b.png"
    assert len(found.images_seen.renamed) == 2
    # two files that differ only by case: which one is meant is unknown, so it is not found
    split = write_split(tmp_path, "train", [
        {"id": 1, "file_name": "Dup.png", "width": 64, "height": 48}], [],
        [{"id": 1, "name": "a"}])
    with pytest.raises(UserInputError, match=r"image id 1: image file .*Dup\.png not found"):
        load_coco_split(split)


def test_decompression_bomb_is_one_line(tmp_path: Path, image_writer: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    image_writer(tmp_path / "train" / "big.png", 64, 48)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 48 // 4)  # 64x48 is > 2x the limit
    split = write_split(tmp_path, "train", [
        {"id": 5, "file_name": "big.png", "width": 64, "height": 48}], [],
        [{"id": 1, "name": "a"}])
    with pytest.raises(UserInputError, match=r"image id 5: image file .* is larger than PIL's "
                                             "decompression-bomb limit"):
        load_coco_split(split)


def test_crowd_regions_reach_evaluation_not_training(coco_writer: Any) -> None:
    cats = {1: "person"}
    train = coco_writer("train", [{"id": 1, "width": 64, "height": 48}], [
        {"image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10]},
        {"image_id": 1, "category_id": 1, "bbox": [20, 10, 40, 30], "iscrowd": 1}], cats)
    data = prepare_data(DataConfig(train=train, val=train))
    dataset = CocoDetectionDataset(data.train, data.label_map, None)
    _, item = dataset[0]
    assert [a["bbox"] for a in item["annotations"]] == [[2.0, 2.0, 10.0, 10.0]]
    assert item["crowd"] == [([20.0, 10.0, 40.0, 30.0], 0)]
    processor = build_image_processor(ModelConfig(preset="tiny", image_size=96))
    batch = DetrCollator(processor)([dataset[0]])
    label = batch["labels"][0]
    assert label["class_labels"].tolist() == [0]  # the loss never sees the crowd
    target = decode_targets(batch["labels"])[0]
    assert target.crowd_boxes.tolist() == [[20.0, 10.0, 60.0, 40.0]]
    assert target.crowd_labels.tolist() == [0]
    torch.testing.assert_close(target.boxes, torch.tensor([[2.0, 2.0, 12.0, 12.0]]),
                               atol=1e-3, rtol=0)
    assert "(+1 crowd regions)" in split_summary(data)[0]


def test_more_objects_than_queries_is_warned(coco_writer: Any) -> None:
    cats = {1: "a"}
    many = [{"image_id": 1, "category_id": 1, "bbox": [i * 5, 1, 4, 4]} for i in range(12)]
    train = coco_writer("train", [{"id": 1}, {"id": 2}], [
        *many, {"image_id": 2, "category_id": 1, "bbox": [1, 1, 4, 4]}], cats)
    data = prepare_data(DataConfig(train=train, val=train))
    queries = num_queries_of(ModelConfig(preset="tiny"))
    assert queries == 10
    note = crowded_images_note(data, queries)
    assert note == ("warning: 2 images have more objects than the model's 10 queries (train 1, "
                    "val 1; the largest has 12): DETR finds at most 10 objects per image; "
                    "raise model.config_overrides.num_queries")
    assert crowded_images_note(data, 12) is None
    assert num_queries_of(ModelConfig(preset="tiny", config_overrides={"num_queries": 30})) == 30


def test_predict_names_are_unique_and_mirror_the_input() -> None:
    # b.jpg and B.JPG are one file on a case-insensitive disk: the second gets -2
    assert drawn_names(["a.jpg", "a.png", "sub/b.jpg", "sub/B.JPG", "c.PNG"]) == [
        "a.jpg.png", "a.png", "sub/b.jpg.png", "sub/B.JPG-2.png", "c.PNG"]
    assert drawn_names(["x.jpg.png", "x.jpg"]) == ["x.jpg.png", "x.jpg-2.png"]
