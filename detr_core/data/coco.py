"""Read and validate a COCO-format split before any training starts.

Each problem is one line naming the file and the image or annotation id. As torchvision's
detection references and HF's DETR processor do, boxes sticking out of their image are clipped
and boxes with no area left are dropped (counted for one warning per split, `prepare`).
`iscrowd: 1` annotations stay: training leaves them out, evaluation treats them as ignore
regions, as COCOeval does. Images without annotations stay (they teach "no object").
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detr_core.config.run_config import SplitPaths
from detr_core.data.images import ImageRecord, ImageSummary, check_images, unicode_variant
from detr_core.files.errors import UserInputError
from detr_core.files.file_io import read_user_text


@dataclass
class CocoSplit:
    """A validated split: the pycocotools index plus what validation found."""

    coco: Any  # pycocotools.coco.COCO
    images_dir: Path
    annotation_file: Path
    image_ids: list[int]
    clipped_boxes: int = 0
    categories: list[dict[str, Any]] = field(default_factory=list)
    dropped_boxes: list[Any] = field(default_factory=list)  # ids of boxes with no area left
    images_seen: ImageSummary | None = None  # what the image check counted (validated only)

    @property
    def used_category_ids(self) -> set[int]:
        """Categories that at least one annotation of the split uses."""
        return {a["category_id"] for a in self.coco.dataset["annotations"]}

    def objects_per_image(self) -> list[int]:
        """Boxes a model must find in each image (crowd regions not counted)."""
        return [sum(1 for a in self.coco.imgToAnns.get(i, []) if not a.get("iscrowd", 0))
                for i in self.image_ids]


@dataclass(frozen=True)
class LabelMap:
    """COCO category ids (any numbering) <-> contiguous model labels 0..K-1."""

    category_ids: tuple[int, ...]
    names: tuple[str, ...]

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: label for label, name in enumerate(self.names)}

    def label_of(self, category_id: int) -> int:
        return self.category_ids.index(category_id)

    def category_of(self, label: int) -> int:
        return self.category_ids[label]

    @classmethod
    def from_categories(cls, categories: list[dict[str, Any]]) -> LabelMap:
        ordered = sorted(categories, key=lambda c: c["id"])
        return cls(tuple(c["id"] for c in ordered), tuple(str(c["name"]) for c in ordered))


def _require(condition: bool, path: Path, message: str) -> None:
    if not condition:
        raise UserInputError(message, source=path)


def _require_id(value: Any, path: Path, where: str, key: str = "id") -> None:
    _require(isinstance(value, int) and not isinstance(value, bool), path,  # pycocotools keys
             f"{where}: `{key}` must be an integer, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_user_text(path))
    except json.JSONDecodeError as exc:
        raise UserInputError(f"not valid JSON (line {exc.lineno}, column {exc.colno}): "
                             f"{exc.msg}", source=path) from None
    except RecursionError:
        raise UserInputError("not valid JSON: nested too deeply", source=path) from None
    _require(isinstance(data, dict), path, "not COCO: top level must be an object")
    for key in ("images", "annotations", "categories"):
        _require(key in data, path, f"not COCO: missing the `{key}` list")
        _require(isinstance(data[key], list), path, f"not COCO: `{key}` must be a list")
    return data


def _check_categories(data: dict[str, Any], path: Path) -> set[int]:
    names: dict[str, Any] = {}  # name -> category id
    for index, cat in enumerate(data["categories"]):
        _require(isinstance(cat, dict) and "id" in cat and "name" in cat, path,
                 f"categories[{index}]: needs `id` and `name`")
        _require_id(cat["id"], path, f"categories[{index}]")
        _require(cat["id"] not in names.values(), path, f"category id {cat['id']}: duplicate")
        # one name per class: the model's id2label / label2id would merge two of a name
        name = str(cat["name"])
        _require(name not in names, path, f"category id {cat['id']}: name {cat['name']!r} is "
                                          f"also category id {names.get(name)}'s")
        names[name] = cat["id"]
    _require(bool(names), path, "not COCO: `categories` is empty")
    return set(names.values())


def _check_images(data: dict[str, Any], path: Path) -> dict[int, dict]:
    """Check every image record (not the files yet); return the records by id."""
    _require(bool(data["images"]), path, "the split has no images (`images` is empty)")
    images: dict[int, dict] = {}
    for index, image in enumerate(data["images"]):
        _require(isinstance(image, dict) and "id" in image, path, f"images[{index}]: no `id`")
        _require_id(image["id"], path, f"images[{index}]")
        where = f"image id {image['id']}"
        _require(image["id"] not in images, path, f"{where}: duplicate image id")
        for key in ("file_name", "width", "height"):
            _require(key in image, path, f"{where}: missing `{key}`")
        _require(all(_is_number(image[k]) and image[k] > 0 for k in ("width", "height")),
                 path, f"{where}: width and height must be positive numbers")
        _require(isinstance(image["file_name"], str) and bool(image["file_name"]), path,
                 f"{where}: `file_name` must be a non-empty string")
        images[image["id"]] = image
    return images


def _check_annotations(
    data: dict[str, Any], path: Path, images: dict[int, dict], category_ids: set[int]
) -> tuple[int, list[Any]]:
    """Validate annotations in place, clip boxes, drop those with no area: (clipped, ids)."""
    clipped, dropped, kept, seen = 0, [], [], set()
    for index, ann in enumerate(data["annotations"]):
        _require(isinstance(ann, dict) and "id" in ann, path, f"annotations[{index}]: no `id`")
        _require_id(ann["id"], path, f"annotations[{index}]")
        where = f"annotation id {ann['id']}"
        _require(ann["id"] not in seen, path, f"{where}: duplicate annotation id")
        seen.add(ann["id"])
        for key in ("image_id", "category_id", "bbox"):
            _require(key in ann, path, f"{where}: missing `{key}`")
        for key in ("image_id", "category_id"):
            _require_id(ann[key], path, where, key)
        _require(ann["image_id"] in images, path,
                 f"{where}: image_id {ann['image_id']} is not in `images`")
        _require(ann["category_id"] in category_ids, path,
                 f"{where}: category_id {ann['category_id']} is not in `categories`")
        # a string "0" is truthy: read as a crowd region here, as a box by pycocotools
        _require(ann.get("iscrowd", 0) in (0, 1),
                 path, f"{where}: iscrowd must be 0 or 1, got {ann.get('iscrowd')!r}")
        bbox = ann["bbox"]
        _require(isinstance(bbox, list) and len(bbox) == 4
                 and all(_is_number(v) and math.isfinite(v) for v in bbox), path,
                 f"{where}: bbox must be [x, y, width, height] finite numbers, got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        image = images[ann["image_id"]]
        x0, y0 = max(x, 0.0), max(y, 0.0)
        x1, y1 = min(x + w, float(image["width"])), min(y + h, float(image["height"]))
        if not (w > 0 and h > 0 and x1 > x0 and y1 > y0):
            dropped.append(ann["id"])  # zero width or height, or nothing left inside the image
            continue
        if (x0, y0, x1, y1) != (x, y, x + w, y + h):
            clipped += 1
            ann["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        ann.setdefault("area", (x1 - x0) * (y1 - y0))
        ann["iscrowd"] = int(ann.get("iscrowd", 0))  # checked above: 0 / 1 / false / true
        kept.append(ann)
    data["annotations"] = kept
    return clipped, dropped


def load_coco_split(paths: SplitPaths, validate: bool = True) -> CocoSplit:
    """Validate one split (annotation JSON + image folder) and index it with pycocotools;
    `validate=False` (a trial's data, checked by the driver) skips the image files' check."""
    path, images_dir = Path(paths.annotations), Path(paths.images)
    data = _read_json(path)
    if validate:
        _require(images_dir.is_dir(), images_dir, "image folder not found")
    category_ids = _check_categories(data, path)
    images = _check_images(data, path)
    clipped, dropped = _check_annotations(data, path, images, category_ids)
    files = [images_dir / r["file_name"] for r in images.values()]
    seen = None
    if validate:
        seen, checks = check_images([ImageRecord(i, file, r["width"], r["height"]) for (i, r), file
                                     in zip(images.items(), files, strict=True)], path)
        found = [check.found_as for check in checks]
    else:
        found = [None if os.path.lexists(file) else unicode_variant(file) for file in files]
    for record, on_disk in zip(images.values(), found, strict=True):
        if on_disk is not None:  # found only under a normalised name: the record takes it
            record["file_name"] = on_disk.relative_to(images_dir).as_posix()
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return CocoSplit(coco, images_dir, path, sorted(i["id"] for i in data["images"]), clipped,
                     list(data["categories"]), dropped, seen)


def check_same_categories(reference: CocoSplit, other: CocoSplit) -> None:
    """Val/test may not introduce categories the model was not trained on."""
    known = {c["id"]: c["name"] for c in reference.categories}
    for cat in other.categories:
        if known.get(cat["id"]) != cat["name"]:
            raise UserInputError(f"category id {cat['id']} ({cat['name']!r}) is not a category "
                                 f"of the training split {reference.annotation_file}",
                                 source=other.annotation_file)
