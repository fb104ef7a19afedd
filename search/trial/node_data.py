"""A search's dataset on every node that trains: generated there, or checked there.

On a cluster each machine has its own disk, so trials are never handed the driver's local
dataset folder. The driver writes a record of what the trials train on
(`<experiment>/prepared_data.json`, `data_record`), and each trial prepares it on its own node
(`prepare_on_node`):

- `synthetic`: the generation parameters. The node makes the dataset in its own cache
  (`$DETR_SEARCH_CACHE` or ~/.cache/detr-search there), keyed by the parameters, so every node
  trains on the very same files; trials starting together on one node are safe (the dataset
  is written to a staging folder and renamed). The driver makes it on its own node too, which
  is where a local search's trials run.
- `coco`: the absolute paths of every split. A user's data is not copied: every node must see
  it at the same path (a shared file system). The driver validates it when it can see it; a
  trial checks its paths on its node first and fails with one line naming the node and the
  missing path.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

from detr_core.config.run_config import DataConfig, run_config_from_dict, run_config_to_dict
from detr_core.data.dataset import check_pipelines_fit
from detr_core.data.prepare import (
    PreparedData,
    coco_paths,
    crowded_images_note,
    prepare_data,
    split_summary,
)
from detr_core.data.synthetic import dataset_dir, ensure_synthetic_dataset
from detr_core.files.errors import UserInputError, errors_from
from detr_core.model.build import num_queries_of

SYNTHETIC = "synthetic"
COCO = "coco"


def _missing_paths(data: DataConfig) -> list[tuple[str, str]]:
    """(dotted key, path) of every COCO annotation file or image folder not on this machine."""
    missing = []
    for split, paths in coco_paths(data).items():
        if not Path(paths.annotations).is_file():
            missing.append((f"data.{split}.annotations", paths.annotations))
        if not Path(paths.images).is_dir():
            missing.append((f"data.{split}.images", paths.images))
    return missing


def data_record(base: dict[str, Any], source: str, on_cluster: bool) -> dict[str, Any]:
    """What the trials train on, prepared where the driver runs (see the module docstring).

    COCO data the driver cannot see is a user error on a local search; joining a cluster
    (`on_cluster`) it is a warning, and each trial validates the data on its node instead.
    The record's `summary` lists each split (images, boxes, classes, images without boxes,
    `detr_core.data.prepare.split_summary`): what `--dry-run` shows. Images with more objects
    than the model's queries are warned about here, once for the whole search.
    """
    config = run_config_from_dict(base, source=source)
    section = run_config_to_dict(config)["data"]
    if config.data.synthetic is not None:
        folder = ensure_synthetic_dataset(config.data.synthetic)
        prepared = prepare_data(config.data, validate=False, quiet=True)
        record = {"kind": SYNTHETIC, "data": section, "driver_copy": str(folder)}
    else:
        missing = _missing_paths(config.data)
        if missing and on_cluster:
            key, path = missing[0]
            print(f"warning: {key} {path} is not on this machine; each trial checks the data "
                  "on the node that trains it", file=sys.stderr, flush=True)
            return {"kind": COCO, "data": section, "validated": False, "summary": []}
        prepared = prepare_data(config.data)  # a missing or broken file: UserInputError
        record = {"kind": COCO, "data": section, "validated": True}
    with errors_from(source):  # the base run's pipelines on the smallest images, up front
        check_pipelines_fit(config.augmentation, prepared.train, prepared.val)
    crowded = crowded_images_note(prepared, num_queries_of(config.model))
    if crowded:
        print(crowded, file=sys.stderr, flush=True)
    return {**record, "summary": split_summary(prepared)}


def revalidate_record(record: dict[str, Any], base: dict[str, Any], source: str,
                      on_cluster: bool) -> dict[str, Any]:
    """A recorded search's data on `--resume` (`base`: the search's base run config): COCO
    files may have changed since the first session, so they are checked again as `data_record`
    checks them; a synthetic dataset is made again if its cache was cleared."""
    return data_record({**base, "data": _normalised(record)["data"]}, source, on_cluster)


def _normalised(record: dict[str, Any]) -> dict[str, Any]:
    """A record as `data_record` writes it; older experiments recorded absolute COCO paths."""
    if "kind" in record:
        return record
    return {"kind": COCO, "data": record, "validated": True}


def data_section(record: dict[str, Any]) -> dict[str, Any]:
    """The run config's `data:` section a trial trains on."""
    return dict(_normalised(record)["data"])


def node_label() -> str:
    """This machine as a user would find it: host name and the IP Ray knows it by."""
    host = socket.gethostname()
    try:
        import ray

        if ray.is_initialized():
            return f"{host} ({ray.util.get_node_ip_address()})"
    except Exception:  # outside a Ray worker the host name alone says enough
        pass
    return host


def prepare_on_node(record: dict[str, Any], data: DataConfig) -> PreparedData:
    """The trial's dataset on this node: a synthetic one made here if missing, COCO paths
    checked here. Prints one line (into the trial's log) saying which data it uses."""
    record = _normalised(record)
    node = node_label()
    if data.synthetic is not None:
        prepared = prepare_data(data, validate=False, quiet=True)
        print(f"data: synthetic dataset {dataset_dir(data.synthetic)} on node {node}",
              flush=True)
        return prepared
    missing = _missing_paths(data)
    if missing:
        key, path = missing[0]
        raise UserInputError(
            f"{path} is not on this node; on a cluster every node must see the data at the "
            "same path (shared storage)", source=f"node {node}", key=key)
    prepared = prepare_data(data, validate=not record.get("validated", True), quiet=True)
    print(f"data: COCO splits {', '.join(coco_paths(data))} checked on node {node}",
          flush=True)
    return prepared
