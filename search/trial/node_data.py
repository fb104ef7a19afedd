"""A search's dataset on every node that trains: generated there, or checked there.

The driver records what the trials train on (`<experiment>/prepared_data.json`, `data_record`)
and each trial prepares it on its own node (`prepare_on_node`). `synthetic`: each node makes the
dataset in its own cache, keyed by its parameters (staged and renamed: concurrent trials are
safe). `coco`: absolute paths, not copied: every node must see them (shared storage).
"""

from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path
from typing import Any

from detr_core.config.run_config import DataConfig, run_config_from_dict, run_config_to_dict
from detr_core.data.prepare import (
    PreparedData,
    coco_paths,
    crowded_images_note,
    prepare_data,
    split_summary,
)
from detr_core.data.synthetic import dataset_dir, ensure_synthetic_dataset
from detr_core.files.errors import UserInputError, errors_from

SYNTHETIC = "synthetic"
COCO = "coco"


def _missing_path(data: DataConfig) -> tuple[str, str] | None:
    """(dotted key, path) of the first COCO annotation file or image folder not on this machine."""
    for split, paths in coco_paths(data).items():
        if not Path(paths.annotations).is_file():
            return f"data.{split}.annotations", paths.annotations
        if not Path(paths.images).is_dir():
            return f"data.{split}.images", paths.images
    return None


def data_record(base: dict[str, Any], source: str, on_cluster: bool) -> dict[str, Any]:
    """What the trials train on, prepared where the driver runs, with each split's `summary`
    for `--dry-run`. COCO data the driver cannot see is an error, a warning `on_cluster`."""
    config = run_config_from_dict(base, source=source)
    section = run_config_to_dict(config)["data"]
    if config.data.synthetic is not None:
        folder = ensure_synthetic_dataset(config.data.synthetic)
        prepared = prepare_data(config.data, validate=False, quiet=True)
        record = {"kind": SYNTHETIC, "data": section, "driver_copy": str(folder)}
    else:
        missing = _missing_path(config.data)
        if missing and on_cluster:
            key, path = missing
            print(f"warning: {key} {path} is not on this machine; each trial checks the data "
                  "on the node that trains it", file=sys.stderr, flush=True)
            return {"kind": COCO, "data": section, "validated": False, "summary": []}
        prepared = prepare_data(config.data)  # a missing or broken file: UserInputError
        record = {"kind": COCO, "data": section, "validated": True}
    with errors_from(source):  # the base run's pipelines on the smallest images, up front
        from detr_core.data.dataset import check_pipelines_fit  # torch: only when checking

        check_pipelines_fit(config.augmentation, prepared.train, prepared.val)
    from detr_core.model.build import num_queries_of  # transformers: only when checking

    if crowded := crowded_images_note(prepared, num_queries_of(config.model)):
        print(crowded, file=sys.stderr, flush=True)
    return {**record, "summary": split_summary(prepared)}


def revalidate_record(record: dict[str, Any], base: dict[str, Any], source: str,
                      on_cluster: bool) -> dict[str, Any]:
    """`data_record` again on `--resume`: COCO files may have changed, a cache been cleared."""
    return data_record({**base, "data": _normalised(record)["data"]}, source, on_cluster)


def _normalised(record: dict[str, Any]) -> dict[str, Any]:
    """A record as `data_record` writes it; older experiments recorded absolute COCO paths."""
    return record if "kind" in record else {"kind": COCO, "data": record, "validated": True}


def data_section(record: dict[str, Any]) -> dict[str, Any]:
    """The run config's `data:` section a trial trains on."""
    return dict(_normalised(record)["data"])


def node_label() -> str:
    """This machine as a user would find it: host name and the IP Ray knows it by."""
    host = socket.gethostname()
    with contextlib.suppress(Exception):  # outside a Ray worker the host name alone says enough
        import ray

        if ray.is_initialized():
            return f"{host} ({ray.util.get_node_ip_address()})"
    return host


def prepare_on_node(record: dict[str, Any], data: DataConfig) -> PreparedData:
    """The trial's dataset on this node (made or checked here), with one line into its log."""
    record = _normalised(record)
    node = node_label()
    if data.synthetic is not None:
        prepared = prepare_data(data, validate=False, quiet=True)
        print(f"data: synthetic dataset {dataset_dir(data.synthetic)} on node {node}", flush=True)
        return prepared
    missing = _missing_path(data)
    if missing:
        key, path = missing
        raise UserInputError(
            f"{path} is not on this node; on a cluster every node must see the data at the "
            "same path (shared storage)", source=f"node {node}", key=key)
    prepared = prepare_data(data, validate=not record.get("validated", True), quiet=True)
    print(f"data: COCO splits {', '.join(coco_paths(data))} checked on node {node}", flush=True)
    return prepared
