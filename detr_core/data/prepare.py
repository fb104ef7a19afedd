"""Turn a run's `data:` section into validated splits on disk.

`synthetic` data is generated (or found in the cache) on every machine that trains; COCO paths
are validated split by split, once on a search's driver (its trials only index them). What was
repaired or is worth knowing is one line each on stderr (`data_notes`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from detr_core.config.run_config import DataConfig, SplitPaths
from detr_core.data.coco import CocoSplit, LabelMap, check_same_categories, load_coco_split
from detr_core.data.synthetic import ensure_synthetic_dataset, split_paths
from detr_core.files.errors import UserInputError

#: What each split's boxes are for: a split without any cannot serve it.
SPLIT_PURPOSE = {"train": "train on", "val": "choose the best step by",
                 "test": "score the model on"}


@dataclass
class PreparedData:
    """Validated splits (test optional) and the label map shared by all of them."""

    train: CocoSplit
    val: CocoSplit
    test: CocoSplit | None
    label_map: LabelMap

    def split(self, name: str) -> CocoSplit:
        split = getattr(self, name)
        if split is None:
            raise ValueError(f"this dataset has no {name} split")
        return split


def _present(data: PreparedData) -> list[tuple[str, CocoSplit]]:
    return [(n, s) for n in ("train", "val", "test") if (s := getattr(data, n)) is not None]


def _crowd(split: CocoSplit) -> int:
    return sum(1 for a in split.coco.dataset["annotations"] if a.get("iscrowd", 0))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun if n == 1 else noun + ('es' if noun.endswith('x') else 's')}"


def coco_paths(data: DataConfig) -> dict[str, SplitPaths]:
    """Split name -> paths; generates the synthetic dataset when `data.synthetic` is set."""
    if data.synthetic is not None:
        root = ensure_synthetic_dataset(data.synthetic)
        names = ["train", "val"] + (["test"] if data.has_test_split else [])
        return {name: split_paths(root, name) for name in names}
    found = {"train": data.train, "val": data.val, "test": data.test}
    return {name: paths for name, paths in found.items() if paths is not None}


def prepare_data(data: DataConfig, validate: bool = True, quiet: bool = False) -> PreparedData:
    """Generate or validate every split (`validate=False`: only index); print `data_notes`."""
    splits = {name: load_coco_split(paths, validate) for name, paths in coco_paths(data).items()}
    for name in ("val", "test"):
        if name in splits:
            check_same_categories(splits["train"], splits[name])
    check_splits_have_boxes(splits)
    placeholder = placeholder_category(splits)
    if not quiet:
        for line in data_notes(splits, placeholder):
            print(line, file=sys.stderr)
    return PreparedData(
        train=splits["train"], val=splits["val"], test=splits.get("test"),
        label_map=LabelMap.from_categories([c for c in splits["train"].categories if
                                            placeholder is None or c["id"] != placeholder["id"]]))


def check_splits_have_boxes(splits: dict[str, CocoSplit]) -> None:
    """Every split needs a box: a val split without one would choose the best checkpoint on an
    empty evaluation (mAP -1, a box loss of 0)."""
    for name, split in splits.items():
        if sum(split.objects_per_image()) == 0:
            dropped = (f", {_count(len(split.dropped_boxes), 'box')} dropped for having no "
                       "area" if split.dropped_boxes else "")
            raise UserInputError(
                f"the {name} split has no boxes to {SPLIT_PURPOSE.get(name, 'use')} "
                f"({_count(len(split.image_ids), 'image')}, "
                f"{_count(_crowd(split), 'crowd region')}{dropped})",
                source=str(split.annotation_file))


def placeholder_category(splits: dict[str, CocoSplit]) -> dict[str, Any] | None:
    """Roboflow's placeholder: a category no annotation of any split uses, named like the
    supercategory of every category in use (its project's name; its own is `none`)."""
    used = set().union(*(s.used_category_ids for s in splits.values()))
    categories = splits["train"].categories
    in_use = [c for c in categories if c["id"] in used]
    supercategories = {str(c.get("supercategory")) for c in in_use}
    return next((c for c in categories if c["id"] not in used and in_use
                 and supercategories == {str(c["name"])}), None)


def data_notes(splits: dict[str, CocoSplit], placeholder: dict[str, Any] | None) -> list[str]:
    """One line each: clipped and dropped boxes, images turned or converted, file names matched
    after normalising, Roboflow's placeholder category, classes val or test use but train not."""
    lines = []
    for name, split in splits.items():
        where = f"{name} ({split.annotation_file})"
        if split.clipped_boxes:
            lines.append(f"warning: {where}: {_count(split.clipped_boxes, 'box')} partly "
                         "outside their image were clipped")
        if dropped := split.dropped_boxes:
            lines.append(f"warning: {where}: {_count(len(dropped), 'box')} with no area (zero "
                         "width or height, or outside their image) dropped: annotation "
                         f"id{'s' if len(dropped) > 1 else ''} "
                         + ", ".join(str(i) for i in dropped[:5])
                         + (", ..." if len(dropped) > 5 else ""))
        seen = split.images_seen
        if seen is not None and (seen.rotated or seen.converted):
            modes = ", ".join(f"{mode}: {n}" for mode, n in sorted(seen.converted.items()))
            parts = ([f"{seen.rotated} turned upright by their EXIF orientation"]
                     if seen.rotated else [])
            if seen.converted:
                parts.append(f"{sum(seen.converted.values())} converted to 8-bit RGB ({modes})")
            lines.append(f"note: {where}: of {seen.images} images, {' and '.join(parts)}")
        if seen is not None and seen.renamed:
            image_id, recorded, on_disk = seen.renamed[0]
            lines.append(f"warning: {where}: {_count(len(seen.renamed), 'file name')} match the "
                         "disk only after normalising Unicode, letter case or `\\` (image id "
                         f"{image_id}: {recorded!r} is {on_disk!r} on disk, e.g. a zip made on "
                         "macOS); using those files")
    if placeholder is not None:
        lines.append(f"note: category {placeholder['id']} {placeholder['name']!r} is used by no "
                     "annotation and is the supercategory of all the others (Roboflow's "
                     "placeholder): left out of the classes")
    trained = splits["train"].used_category_ids
    names = {c["id"]: c["name"] for c in splits["train"].categories}
    for name in ("val", "test"):
        unseen = sorted(splits[name].used_category_ids - trained) if name in splits else []
        if unseen:
            listed = ", ".join(f"{i} {names.get(i)!r}" for i in unseen)
            lines.append(f"warning: {name} ({splits[name].annotation_file}) has objects of "
                         f"categories no train annotation uses: {listed}; the model "
                         "cannot learn them")
    return lines


def crowded_images_note(data: PreparedData, num_queries: int | None) -> str | None:
    """A warning when images hold more objects than the model has queries, else None."""
    if num_queries is None:
        return None
    over = {name: beyond for name, split in _present(data)
            if (beyond := [c for c in split.objects_per_image() if c > num_queries])}
    if not over:
        return None
    where = ", ".join(f"{name} {len(beyond)}" for name, beyond in over.items())
    return (f"warning: {sum(len(b) for b in over.values())} images have more objects than the "
            f"model's {num_queries} queries ({where}; the largest has "
            f"{max(max(b) for b in over.values())}): DETR finds at most {num_queries} objects "
            "per image; raise model.config_overrides.num_queries")


def split_summary(data: PreparedData) -> list[str]:
    """Per split: images, boxes, classes used, images without boxes (what a dry run shows)."""
    lines = []
    for name, split in _present(data):
        counts = split.objects_per_image()
        crowd = _crowd(split)
        classes = len(split.used_category_ids & set(data.label_map.category_ids))
        lines.append(f"  {name:<5} {len(counts)} images, {sum(counts)} boxes"
                     + (f" (+{crowd} crowd regions)" if crowd else "")
                     + f", {classes} of {len(data.label_map.names)} classes, "
                     f"{counts.count(0)} images without boxes ({split.annotation_file})")
    return lines
