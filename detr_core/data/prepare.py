"""Turn a run's `data:` section into validated splits on disk.

For `synthetic` that means generating (or finding in the cache) the dataset; for COCO paths
it means validating every split. A search validates a COCO dataset once on the driver and
lets each trial only index it (`validate=False`); a synthetic one is made on every machine
that trains, from its parameters (the cache is keyed by them).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from detr_core.config import DataConfig, SplitPaths
from detr_core.data.coco import CocoSplit, LabelMap, check_same_categories, load_coco_split
from detr_core.data.synthetic import ensure_synthetic_dataset, split_paths


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


def coco_paths(data: DataConfig) -> dict[str, SplitPaths]:
    """Split name -> paths; generates the synthetic dataset when `data.synthetic` is set."""
    if data.synthetic is not None:
        root = ensure_synthetic_dataset(data.synthetic)
        names = ["train", "val"] + (["test"] if data.has_test_split else [])
        return {name: split_paths(root, name) for name in names}
    found = {"train": data.train, "val": data.val, "test": data.test}
    return {name: paths for name, paths in found.items() if paths is not None}


def prepare_data(data: DataConfig, validate: bool = True, quiet: bool = False) -> PreparedData:
    """Generate or validate every split; print one warning line if boxes had to be clipped.

    `validate=False` is for data a search driver prepared already: it is only indexed.
    """
    splits = {name: load_coco_split(paths, validate) for name, paths in coco_paths(data).items()}
    for name in ("val", "test"):
        if name in splits:
            check_same_categories(splits["train"], splits[name])
    clipped = {name: s.clipped_boxes for name, s in splits.items() if s.clipped_boxes}
    if clipped and not quiet:
        detail = ", ".join(f"{n} {count} ({splits[n].annotation_file})"
                           for n, count in clipped.items())
        print(f"warning: boxes partly outside their image were clipped: {detail}",
              file=sys.stderr)
    return PreparedData(
        train=splits["train"], val=splits["val"], test=splits.get("test"),
        label_map=LabelMap.from_categories(splits["train"].categories),
    )
