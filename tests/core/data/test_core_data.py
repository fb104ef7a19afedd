"""detr_core.data: COCO splits written to disk, the synthetic dataset, augmentation, collation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from detr_core.config.run_config import DataConfig, ModelConfig, SplitPaths, SyntheticConfig
from detr_core.data.coco import LabelMap, load_coco_split
from detr_core.data.dataset import CocoDetectionDataset, DetrCollator, build_augmentation, load_rgb
from detr_core.data.prepare import prepare_data
from detr_core.data.synthetic import SHAPES_CATEGORY_IDS as CATEGORY_IDS
from detr_core.data.synthetic import dataset_dir, ensure_synthetic_dataset
from detr_core.files.errors import UserInputError
from detr_core.model.build import build_image_processor, build_model

# Train split: an RGB image with two objects, a grayscale one, an RGBA one and one without any
# annotation (it must be kept: it teaches "no object").
TRAIN_IMAGES = [
    {"id": 1, "width": 64, "height": 48},
    {"id": 2, "width": 40, "height": 30, "mode": "L"},
    {"id": 3, "width": 50, "height": 50, "mode": "RGBA"},
    {"id": 4, "width": 64, "height": 48},
]


def train_annotations(cat_a: int, cat_b: int) -> list[dict[str, Any]]:
    return [
        {"image_id": 1, "category_id": cat_a, "bbox": [4, 6, 20, 10]},
        {"image_id": 1, "category_id": cat_b, "bbox": [30, 20, 16, 16]},
        {"image_id": 2, "category_id": cat_b, "bbox": [0, 0, 10, 12]},
        {"image_id": 3, "category_id": cat_a, "bbox": [10, 10, 30, 25]},
    ]


def write_dataset(coco_writer: Any, cats: dict[int, str]) -> DataConfig:
    ids = sorted(cats)
    train = coco_writer("train", TRAIN_IMAGES, train_annotations(ids[0], ids[-1]), cats)
    val = coco_writer("val", [{"id": 10}],
                      [{"image_id": 10, "category_id": ids[-1], "bbox": [1, 2, 20, 20]}], cats)
    return DataConfig(train=train, val=val)


@pytest.mark.parametrize(
    "cats",
    [{0: "cat", 1: "dog"}, {90: "zebra", 1: "person", 7: "train"}],
    ids=["roboflow-0-based", "sparse-coco-ids"],
)
def test_prepare_data_label_map_and_model_config(coco_writer: Any, cats: dict[int, str]) -> None:
    """Any category numbering maps to contiguous labels 0..K-1 that end up in the model config."""
    data = prepare_data(write_dataset(coco_writer, cats))
    ordered = sorted(cats)
    assert data.label_map.category_ids == tuple(ordered)
    assert data.label_map.names == tuple(cats[i] for i in ordered)
    assert [data.label_map.label_of(i) for i in ordered] == list(range(len(cats)))
    assert [data.label_map.category_of(k) for k in range(len(cats))] == ordered
    # Images without annotations are kept.
    assert data.train.image_ids == [1, 2, 3, 4]
    assert data.train.coco.getAnnIds(imgIds=[4]) == []
    assert data.test is None
    model = build_model(ModelConfig(preset="tiny", image_size=64), data.label_map, "giou", False)
    expected = {k: cats[i] for k, i in enumerate(ordered)}
    assert model.config.id2label == expected
    assert model.config.label2id == {name: k for k, name in expected.items()}
    assert model.config.num_labels == len(cats)
    assert model.class_labels_classifier.out_features == len(cats) + 1


def test_dataset_items_use_contiguous_labels(coco_writer: Any) -> None:
    data = prepare_data(write_dataset(coco_writer, {1: "person", 7: "train", 90: "zebra"}))
    dataset = CocoDetectionDataset(data.train, data.label_map, transform=None)
    assert len(dataset) == 4
    _, target = dataset[0]
    assert target["image_id"] == 1
    assert [a["category_id"] for a in target["annotations"]] == [0, 2]
    assert target["annotations"][0]["bbox"] == [4.0, 6.0, 20.0, 10.0]
    _, empty = dataset[3]
    assert empty == {"image_id": 4, "annotations": [], "crowd": []}


def test_small_split_is_decoded_once_and_large_or_worker_reads_from_disk(
        coco_writer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A split that fits `$DETR_SEARCH_IMAGE_CACHE_MB` is decoded once per image in the training
    process (each access gets its own copy); a larger one, or a DataLoader worker, reads every
    time."""
    import detr_core.data.dataset as dataset_module

    data = prepare_data(write_dataset(coco_writer, {1: "person", 7: "train", 90: "zebra"}))
    reads: list[str] = []

    def counting_load(path: str) -> np.ndarray:
        reads.append(path)
        return load_rgb(path)

    monkeypatch.setattr(dataset_module, "load_rgb", counting_load)
    cached = CocoDetectionDataset(data.train, data.label_map, transform=None)
    first, _ = cached[0]
    first[:] = 0  # a transform writing into its input does not reach the cache
    again, _ = cached[0]
    assert len(reads) == 1 and again.any()
    assert np.array_equal(again, load_rgb(reads[0]))

    reads.clear()
    decoded = sum(3 * i["width"] * i["height"] for i in data.train.coco.imgs.values())
    monkeypatch.setenv("DETR_SEARCH_IMAGE_CACHE_MB", str((decoded - 1) / 2**20))  # 1 byte over
    uncached = CocoDetectionDataset(data.train, data.label_map, transform=None)
    uncached[0], uncached[0]
    assert len(reads) == 2

    reads.clear()
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    in_worker = CocoDetectionDataset(data.train, data.label_map, transform=None)
    in_worker[0], in_worker[0]
    assert len(reads) == 2


def test_label_map_sorted_by_category_id() -> None:
    label_map = LabelMap.from_categories([{"id": 7, "name": "b"}, {"id": 2, "name": "a"}])
    assert label_map.id2label == {0: "a", 1: "b"}
    assert label_map.label2id == {"a": 0, "b": 1}
    assert label_map.label_of(7) == 1


def _valid_split(coco_writer: Any, **changes: Any) -> SplitPaths:
    images = [{"id": 1}, {"id": 2}]
    anns = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
            {"image_id": 2, "category_id": 2, "bbox": [5, 5, 20, 20]}]
    images = changes.pop("images", images)
    anns = changes.pop("annotations", anns)
    return coco_writer("train", images, anns, {1: "a", 2: "b"}, **changes)


def test_missing_annotation_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(UserInputError) as info:
        load_coco_split(SplitPaths(annotations=str(path), images=str(tmp_path)))
    assert str(info.value) == f"{path}: file not found"


def test_json_that_is_not_coco(coco_writer: Any) -> None:
    paths = _valid_split(coco_writer)
    data = json.loads(Path(paths.annotations).read_text())
    del data["annotations"]
    Path(paths.annotations).write_text(json.dumps(data))
    with pytest.raises(UserInputError) as info:
        load_coco_split(paths)
    assert str(info.value) == f"{paths.annotations}: not COCO: missing the `annotations` list"


def test_broken_json(coco_writer: Any) -> None:
    paths = _valid_split(coco_writer)
    Path(paths.annotations).write_text('{"images": [')
    with pytest.raises(UserInputError, match=r"not valid JSON \(line 1, column 13\)") as info:
        load_coco_split(paths)
    assert paths.annotations in str(info.value)


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
          {"image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5]}],
         "annotation id 2: image_id 99 is not in `images`"),
        ([{"image_id": 1, "category_id": 5, "bbox": [1, 1, 5, 5]}],
         "annotation id 1: category_id 5 is not in `categories`"),
        ([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5]}],
         "annotation id 1: bbox must be [x, y, width, height]"),
        ([{"image_id": 1, "category_id": 1, "bbox": [1, 1, float("nan"), 5]}],
         "annotation id 1: bbox must be [x, y, width, height] finite numbers"),
        ([{"image_id": 1, "category_id": 1, "bbox": [1, float("inf"), 5, 5]}],
         "annotation id 1: bbox must be [x, y, width, height] finite numbers"),
        ([{"image_id": 1, "category_id": 1, "bbox": [1, 1, "5", 5]}],
         "annotation id 1: bbox must be [x, y, width, height]"),
        ([{"image_id": 1, "bbox": [1, 1, 5, 5]}], "annotation id 1: missing `category_id`"),
        ([{"image_id": 1, "category_id": "1", "bbox": [1, 1, 5, 5]}],
         "annotation id 1: `category_id` must be an integer, got '1'"),
        ([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": "0"}],
         "annotation id 1: iscrowd must be 0 or 1, got '0'"),
        ([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 2}],
         "annotation id 1: iscrowd must be 0 or 1, got 2"),
    ],
    ids=["missing-image", "unknown-category", "short-bbox", "nan", "infinite", "string",
         "no-category", "category-id-string", "iscrowd-string", "iscrowd-2"],
)
def test_broken_annotations(coco_writer: Any, annotations: list[dict],
                            expected: str) -> None:
    paths = _valid_split(coco_writer, annotations=annotations)
    with pytest.raises(UserInputError) as info:
        load_coco_split(paths)
    assert str(info.value).startswith(f"{paths.annotations}: {expected}")


def test_two_categories_of_one_name_are_refused(coco_writer: Any) -> None:
    paths = coco_writer("train", [{"id": 1}], [], {1: "cat", 2: "dog", 3: "cat"})
    with pytest.raises(UserInputError) as info:
        load_coco_split(paths)
    assert str(info.value) == (f"{paths.annotations}: category id 3: name 'cat' is also "
                               "category id 1's")


def test_iscrowd_as_a_boolean_is_read_as_0_or_1(coco_writer: Any) -> None:
    paths = _valid_split(coco_writer, annotations=[
        {"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "iscrowd": False},
        {"image_id": 2, "category_id": 2, "bbox": [5, 5, 20, 20], "iscrowd": True}])
    split = load_coco_split(paths)
    assert [a["iscrowd"] for a in split.coco.dataset["annotations"]] == [0, 1]
    assert split.objects_per_image() == [1, 0]


@pytest.mark.parametrize(
    ("split_name", "annotations", "expected"),
    [("train", [], "the train split has no boxes to train on (2 images, 0 crowd regions)"),
     ("train", [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "iscrowd": 1},
                {"image_id": 2, "category_id": 1, "bbox": [1, 1, 0, 10]}],
      "the train split has no boxes to train on (2 images, 1 crowd region, 1 box dropped for "
      "having no area)"),
     ("val", [], "the val split has no boxes to choose the best step by (2 images, 0 crowd "
                 "regions)")],
    ids=["train-empty", "train-crowd-and-degenerate", "val-empty"])
def test_a_split_without_boxes_is_refused(coco_writer: Any, split_name: str,
                                          annotations: list[dict], expected: str) -> None:
    images = [{"id": 1}, {"id": 2}]
    boxes = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}]
    splits = {name: coco_writer(name, images, annotations if name == split_name else boxes,
                                {1: "a"}) for name in ("train", "val")}
    with pytest.raises(UserInputError) as info:
        prepare_data(DataConfig(train=splits["train"], val=splits["val"]), quiet=True)
    assert str(info.value) == f"{splits[split_name].annotations}: {expected}"


def test_a_pipeline_that_cannot_take_the_smallest_image_is_refused_before_training(
        coco_writer: Any) -> None:
    """A RandomCrop larger than some images fails there mid-epoch (CropSizeError); it is
    found on the narrowest and the shortest image of the split, even at p < 1."""
    from detr_core.config.run_config import AugmentationConfig
    from detr_core.data.dataset import check_pipelines_fit

    images = [{"id": 1, "width": 120, "height": 100}, {"id": 2, "width": 50, "height": 90},
              {"id": 3, "width": 110, "height": 40}]
    boxes = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}]
    train = coco_writer("train", images, boxes, {1: "a"})
    val = coco_writer("val", images[:1], boxes, {1: "a"})
    data = prepare_data(DataConfig(train=train, val=val), quiet=True)
    fits = AugmentationConfig(train=[{"RandomCrop": {"height": 40, "width": 50}}])
    check_pipelines_fit(fits, data.train, data.val)
    for crop, culprit in (({"height": 40, "width": 60}, "image id 2"),
                          ({"height": 50, "width": 50, "p": 0.1}, "image id 3")):
        too_big = AugmentationConfig(train=[{"RandomCrop": crop}])
        with pytest.raises(UserInputError) as info:
            check_pipelines_fit(too_big, data.train, data.val)
        message = str(info.value)
        assert message.startswith(f"augmentation.train: fails on {culprit} of {train.annotations}")
        assert "CropSizeError" in message and "\n" not in message


def test_missing_image_file(coco_writer: Any) -> None:
    paths = _valid_split(coco_writer, images=[{"id": 1}, {"id": 2, "write_file": False}])
    with pytest.raises(UserInputError) as info:
        load_coco_split(paths)
    message = str(info.value)
    assert message.startswith(f"{paths.annotations}: image id 2: image file ")
    assert str(Path(paths.images) / "2.png") in message


def test_duplicate_image_id_and_bad_size(coco_writer: Any) -> None:
    paths = _valid_split(coco_writer, images=[{"id": 1}, {"id": 1}])
    with pytest.raises(UserInputError, match="image id 1: duplicate image id"):
        load_coco_split(paths)
    paths = _valid_split(coco_writer, images=[{"id": 1}, {"id": 2, "width": 0}])
    with pytest.raises(UserInputError, match="image id 2: width and height must be positive"):
        load_coco_split(paths)


def test_val_category_unknown_to_train(coco_writer: Any) -> None:
    train = coco_writer("train", [{"id": 1}], [], {1: "a"})
    val = coco_writer("val", [{"id": 1}], [], {1: "a", 2: "b"})
    with pytest.raises(UserInputError) as info:
        prepare_data(DataConfig(train=train, val=val))
    assert str(info.value).startswith(f"{val.annotations}: category id 2 ('b')")


def test_box_partly_outside_is_clipped_with_warning(coco_writer: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cats = {1: "a"}
    images = [{"id": 1, "width": 64, "height": 48}, {"id": 2, "width": 64, "height": 48}]
    train = coco_writer("train", images, [
        {"image_id": 1, "category_id": 1, "bbox": [-5, 10, 20, 10]},    # left edge outside
        {"image_id": 1, "category_id": 1, "bbox": [50, 40, 30, 20]},    # right/bottom outside
        {"image_id": 2, "category_id": 1, "bbox": [10, 10, 10, 10]},    # inside
    ], cats)
    val = coco_writer("val", images[:1], [{"image_id": 1, "category_id": 1,
                                           "bbox": [10, 10, 10, 10]}], cats)
    data = prepare_data(DataConfig(train=train, val=val))
    assert data.train.clipped_boxes == 2
    assert data.val.clipped_boxes == 0
    anns = data.train.coco.anns
    assert anns[1]["bbox"] == [0.0, 10.0, 15.0, 10.0]
    assert anns[2]["bbox"] == [50.0, 40.0, 14.0, 8.0]
    assert anns[3]["bbox"] == [10, 10, 10, 10]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: train ({train.annotations}): 2 boxes partly outside their image "
                   "were clipped"]
    # quiet=True prints nothing
    prepare_data(DataConfig(train=train, val=val), quiet=True)
    assert capsys.readouterr().err == ""


def test_grayscale_and_rgba_images_become_rgb(coco_writer: Any, tmp_path: Path) -> None:
    data = prepare_data(write_dataset(coco_writer, {0: "cat", 1: "dog"}))
    dataset = CocoDetectionDataset(data.train, data.label_map, transform=None)
    shapes = {}
    for index in range(len(dataset)):
        image, target = dataset[index]
        assert image.dtype == np.uint8
        shapes[target["image_id"]] = image.shape
    assert shapes == {1: (48, 64, 3), 2: (30, 40, 3), 3: (50, 50, 3), 4: (48, 64, 3)}
    # Grayscale: three equal channels with the file's values.
    gray = np.asarray(Image.open(Path(data.train.images_dir) / "2.png"))
    image, _ = dataset[1]
    assert (image == gray[..., None]).all()
    # RGBA: composited on black (transparent -> black, opaque -> its colour).
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)
    rgba[0, 1] = (200, 100, 50, 0)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    rgb = load_rgb(str(tmp_path / "rgba.png"))
    assert rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [200, 100, 50]
    assert rgb[0, 1].tolist() == [0, 0, 0]


# ---------------------------------------------------------------------------------------------
# synthetic dataset


def small_synthetic(cache: Path, **changes: Any) -> SyntheticConfig:
    params = {"num_train": 12, "num_val": 4, "num_test": 3, "image_size": 48, "seed": 1,
              "cache_dir": str(cache), **changes}
    return SyntheticConfig(**params)


def test_synthetic_is_deterministic_and_cached(tmp_path: Path) -> None:
    first = ensure_synthetic_dataset(small_synthetic(tmp_path / "a"))
    second = ensure_synthetic_dataset(small_synthetic(tmp_path / "b"))
    assert first != second
    assert first.name == second.name  # the folder name depends on parameters only
    for split in ("train", "val", "test"):
        assert (first / f"{split}.json").read_bytes() == (second / f"{split}.json").read_bytes()
        assert (first / split / "000001.png").read_bytes() == \
            (second / split / "000001.png").read_bytes()
    json_file = first / "train.json"
    mtime = json_file.stat().st_mtime_ns
    png_mtime = (first / "train" / "000001.png").stat().st_mtime_ns
    again = ensure_synthetic_dataset(small_synthetic(tmp_path / "a"))
    assert again == first
    assert json_file.stat().st_mtime_ns == mtime
    assert (first / "train" / "000001.png").stat().st_mtime_ns == png_mtime
    assert [p.name for p in (tmp_path / "a").iterdir()] == [first.name]  # no staging leftovers


def test_synthetic_parameters_change_the_folder(tmp_path: Path) -> None:
    base = small_synthetic(tmp_path)
    folders = {dataset_dir(base)}
    for change in ({"seed": 2}, {"num_train": 13}, {"image_size": 64}, {"max_objects": 2}):
        folders.add(dataset_dir(small_synthetic(tmp_path, **change)))
    assert len(folders) == 5
    made = ensure_synthetic_dataset(small_synthetic(tmp_path, seed=2))
    assert made == dataset_dir(small_synthetic(tmp_path, seed=2))
    other = ensure_synthetic_dataset(base)
    assert (made / "train.json").read_bytes() != (other / "train.json").read_bytes()


def test_synthetic_default_cache_root_is_the_session_cache(isolated_dataset_cache: Path) -> None:
    cfg = SyntheticConfig(num_train=2, num_val=1, num_test=0, image_size=32)
    root = ensure_synthetic_dataset(cfg)
    assert root.parent == isolated_dataset_cache / "synthetic"
    assert not (root / "test.json").exists()


def test_synthetic_files_are_real_coco(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    cfg = small_synthetic(tmp_path, num_train=24)
    root = ensure_synthetic_dataset(cfg)
    coco = COCO(str(root / "train.json"))
    assert len(coco.getImgIds()) == 24
    assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == \
        {v: k for k, v in CATEGORY_IDS.items()}
    used = set()
    for image_id in coco.getImgIds():
        info = coco.imgs[image_id]
        with Image.open(root / "train" / info["file_name"]) as image:
            assert image.format == "PNG"
            assert image.size == (48, 48) == (info["width"], info["height"])
            assert image.mode == "RGB"
        anns = coco.imgToAnns[image_id]
        assert 1 <= len(anns) <= 3
        for ann in anns:
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0 and w > 0 and h > 0
            assert x + w <= 48 and y + h <= 48
            used.add(ann["category_id"])
    assert len(used) >= 2
    # The generated data goes through the same validation as a user's export, untouched.
    data = prepare_data(DataConfig(synthetic=cfg))
    assert data.train.clipped_boxes == 0
    assert data.test is not None and len(data.test.image_ids) == 3
    assert data.label_map.category_ids == (1, 2, 3)


# ---------------------------------------------------------------------------------------------
# augmentation and collation


def test_augmentation_from_yaml(tmp_path: Path) -> None:
    from detr_core.config.run_config import load_run_config

    path = tmp_path / "run.yaml"
    path.write_text(
        "model: {preset: tiny}\n"
        "data: {synthetic: {num_train: 4}}\n"
        "augmentation:\n"
        "  train:\n"
        "    - HorizontalFlip: {p: 1.0}\n"
        "    - RandomBrightnessContrast: {p: 0.5}\n"
        "    - ToGray\n"
        "  min_area: 9\n")
    cfg = load_run_config(path)
    compose = build_augmentation(cfg.augmentation.train, cfg.augmentation.min_area,
                                 cfg.augmentation.min_visibility, "augmentation.train")
    assert [type(t).__name__ for t in compose.transforms] == [
        "HorizontalFlip", "RandomBrightnessContrast", "ToGray"]
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    out = compose(image=image, bboxes=np.array([[2, 4, 10, 6], [0, 0, 2, 2]], dtype=np.float32),
                  category_ids=[0, 1])
    # flipped horizontally; the 2x2 box (area 4 < min_area 9) is dropped with its label
    np.testing.assert_allclose(out["bboxes"], [[28.0, 4.0, 10.0, 6.0]], atol=1e-4)
    assert list(out["category_ids"]) == [0]


@pytest.mark.parametrize(
    ("steps", "where", "problem"),
    [
        ([{"NoSuchTransform": {}}], "augmentation.train[0]", "unknown albumentations transform"),
        ([{"HorizontalFlip": {}}, {"Compose": {}}], "augmentation.train[1]",
         "unknown albumentations transform"),
        ([{"HorizontalFlip": {"p": 2.0}}], "augmentation.train[0]", "HorizontalFlip: "),
        ([{"HorizontalFlip": 0.5}], "augmentation.train[0]", "must be a mapping"),
        ([{"A": {}, "B": {}}], "augmentation.train[0]", "expected `TransformName"),
    ],
)
def test_augmentation_errors_name_the_step(steps: list, where: str, problem: str) -> None:
    with pytest.raises(UserInputError) as info:
        build_augmentation(steps, 0.0, 0.0, "augmentation.train")
    assert str(info.value).startswith(f"{where}: ")
    assert problem in str(info.value)


def test_empty_augmentation_still_clips() -> None:
    compose = build_augmentation([], 0.0, 0.0, "augmentation.val")
    out = compose(image=np.zeros((10, 10, 3), dtype=np.uint8),
                  bboxes=np.array([[5, 5, 10, 10]], dtype=np.float32), category_ids=[0])
    np.testing.assert_allclose(out["bboxes"], [[5.0, 5.0, 5.0, 5.0]], atol=1e-4)


@pytest.mark.parametrize("steps", [
    [{"HorizontalFlip": {"p": 0.5}}, {"ColorJitter": {"hue": 0.1, "p": 0.5}}],
    [{"Affine": {"translate_percent": 0.4, "scale": [0.5, 1.5], "rotate": [-30, 30],
                 "p": 0.9}}, {"ColorJitter": {"p": 0.5}}, "ToGray"],
    [{"RandomCrop": {"height": 24, "width": 24}}],
    [{"ColorJitter": {"p": 0.5}}, "ToGray"],
])
def test_boxes_filtered_once_when_only_the_first_transform_moves_them(steps: list) -> None:
    """When no transform after the first moves boxes, they are filtered at the end only (not
    after each transform, albumentations' default): the same pixels, boxes and labels as
    albumentations filtering after every step, on random boxes (small ones among them) that
    crops, scales and shifts push partly or wholly out of the image."""
    compose = build_augmentation(steps, 6.0, 0.3, "augmentation.train", seed=3)
    reference = build_augmentation(steps, 6.0, 0.3, "augmentation.train", seed=3)
    assert not compose.processors["bboxes"].params.check_each_transform
    reference.processors["bboxes"].params.check_each_transform = True
    reference.check_each_transform = tuple(reference.processors.values())
    rng = np.random.default_rng(0)
    dropped = 0
    for _ in range(150):
        image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        # inside the 64 x 48 image, as data preparation guarantees
        boxes = np.stack([rng.uniform(0, 40, 4), rng.uniform(0, 30, 4), rng.uniform(1, 20, 4),
                          rng.uniform(1, 17, 4)], axis=1).astype(np.float32)
        a = compose(image=image, bboxes=boxes, category_ids=[0, 1, 2, 3])
        b = reference(image=image, bboxes=boxes, category_ids=[0, 1, 2, 3])
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["bboxes"], b["bboxes"])
        assert list(a["category_ids"]) == list(b["category_ids"])
        dropped += 4 - len(a["bboxes"])
    assert dropped > 0  # the filter had work to do


@pytest.mark.parametrize("steps", [
    [{"ColorJitter": {"p": 0.5}}, {"Affine": {"scale": [1.0, 2.0]}}],
    [{"RandomCrop": {"height": 24, "width": 24}}, {"Affine": {"translate_percent": 0.3}}],
])
def test_boxes_filtered_after_each_transform_when_a_later_one_moves_them(steps: list) -> None:
    """A box under `min_area` is dropped before a later scale-up could keep it (the filter
    after the colour transform): albumentations' own behaviour, kept."""
    compose = build_augmentation(steps, 6.0, 0.0, "augmentation.train", seed=0)
    assert compose.processors["bboxes"].params.check_each_transform
    if "ColorJitter" in steps[0]:
        out = compose(image=np.zeros((48, 64, 3), dtype=np.uint8),
                      bboxes=np.array([[10, 10, 2, 2]], dtype=np.float32), category_ids=[0])
        assert len(out["bboxes"]) == 0  # area 4 < 6 before the scale-up


def test_collate_outputs_detr_inputs(coco_writer: Any) -> None:
    data = prepare_data(write_dataset(coco_writer, {0: "cat", 1: "dog"}))
    dataset = CocoDetectionDataset(data.train, data.label_map,
                                   build_augmentation([], 0.0, 0.0, "augmentation.val"))
    processor = build_image_processor(ModelConfig(preset="tiny", image_size=64))
    batch = DetrCollator(processor)([dataset[i] for i in range(len(dataset))])
    assert set(batch) == {"pixel_values", "pixel_mask", "labels"}
    assert batch["pixel_values"].shape == (4, 3, 64, 64)
    assert batch["pixel_values"].dtype == torch.float32
    assert batch["pixel_mask"].shape == (4, 64, 64)
    labels = batch["labels"]
    assert len(labels) == 4
    assert [len(label["boxes"]) for label in labels] == [2, 1, 1, 0]
    assert [label["class_labels"].tolist() for label in labels] == [[0, 1], [1], [0], []]
    for label in labels:
        boxes = label["boxes"].reshape(-1, 4)
        assert ((boxes >= 0) & (boxes <= 1)).all()
        assert label["size"].tolist() == [64, 64]
    # image 1 is 64x48 -> resized to 64x48 inside the 64x64 canvas; image 3 is 50x50 -> 64x64
    assert labels[0]["resized_size"].tolist() == [48, 64]
    assert labels[0]["orig_size"].tolist() == [48, 64]
    assert labels[2]["resized_size"].tolist() == [64, 64]
    assert int(batch["pixel_mask"][0].sum()) == 48 * 64
    # box [4, 6, 20, 10] of image 1 as normalised (cx, cy, w, h) of the 64x64 canvas
    expected = torch.tensor([(4 + 10) / 64, (6 + 5) / 64, 20 / 64, 10 / 64])
    torch.testing.assert_close(labels[0]["boxes"][0], expected, atol=1e-4, rtol=0)


def _augmented_stream(dataset: Any, *, num_workers: int, epochs: int, torch_seed: int
                      ) -> list[list[np.ndarray]]:
    """The augmented images a DataLoader yields, epoch by epoch (batch size 1, no shuffle)."""
    torch.manual_seed(torch_seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=num_workers,
                                         collate_fn=lambda items: items[0][0])
    return [[image.copy() for image in loader] for _ in range(epochs)]


@pytest.fixture
def same_image_dataset(coco_writer: Any) -> CocoDetectionDataset:
    """Eight copies of one image behind a pipeline of random colour changes (seed 5)."""
    images = [{"id": i, "file_name": "same.png", "width": 64, "height": 48} for i in range(1, 9)]
    box = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 10, 10]}  # a split needs one
    split = coco_writer("train", images[:1], [box], {1: "a"})
    data = json.loads(Path(split.annotations).read_text())
    data["images"] = images
    Path(split.annotations).write_text(json.dumps(data))
    prepared = prepare_data(DataConfig(train=split, val=split), quiet=True)
    compose = build_augmentation([{"ColorJitter": {"brightness": 0.5, "hue": 0.2, "p": 1.0}}],
                                 0.0, 0.0, "augmentation.train", seed=5)
    return CocoDetectionDataset(prepared.train, prepared.label_map, compose)


def test_augmentation_follows_the_seed_in_the_main_process(same_image_dataset: Any) -> None:
    first = _augmented_stream(same_image_dataset, num_workers=0, epochs=1, torch_seed=0)
    same_image_dataset.transform.set_random_seed(5)  # a new run with the same seed
    again = _augmented_stream(same_image_dataset, num_workers=0, epochs=1, torch_seed=0)
    for a, b in zip(first[0], again[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0][0], first[0][1])  # one stream, not one draw repeated
    other = build_augmentation([{"ColorJitter": {"brightness": 0.5, "hue": 0.2, "p": 1.0}}],
                               0.0, 0.0, "augmentation.train", seed=6)
    same_image_dataset.transform = other
    changed = _augmented_stream(same_image_dataset, num_workers=0, epochs=1, torch_seed=0)
    assert not np.array_equal(first[0][0], changed[0][0])


def test_dataloader_workers_get_their_own_reproducible_streams(same_image_dataset: Any) -> None:
    """Two workers: each re-seeds its copy of the pipeline from torch's per-worker seed, so the
    workers do not replay one stream, a new epoch gets new draws, and a rerun with the same
    torch seed gets exactly the same images."""
    run = _augmented_stream(same_image_dataset, num_workers=2, epochs=2, torch_seed=0)
    rerun = _augmented_stream(same_image_dataset, num_workers=2, epochs=2, torch_seed=0)
    for epoch, again in zip(run, rerun, strict=True):
        for a, b in zip(epoch, again, strict=True):
            np.testing.assert_array_equal(a, b)
    epoch_one, epoch_two = run
    assert not np.array_equal(epoch_one[0], epoch_one[1])  # worker 0's first vs worker 1's
    assert not np.array_equal(epoch_one[0], epoch_two[0])  # epoch 2 is not epoch 1 again
    other_seed = _augmented_stream(same_image_dataset, num_workers=2, epochs=1, torch_seed=1)
    assert not np.array_equal(epoch_one[0], other_seed[0][0])
