"""The dataset on the node that trains (`search.trial.node_data`): a synthetic one made again in
that node's own cache, the very same files; COCO paths checked there, a missing one failing
the trial with one line naming the node and the path."""

from __future__ import annotations

import copy
import filecmp
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from detr_core.config.run_config import run_config_from_dict
from detr_core.files.errors import UserInputError
from search.trial.node_data import data_record, data_section, prepare_on_node


def _coco_run(tiny_run_dict: dict[str, Any], coco_writer: Any) -> dict[str, Any]:
    images = [{"id": i} for i in (1, 2)]
    anns = [{"image_id": i, "category_id": 1, "bbox": [4, 4, 20, 16]} for i in (1, 2)]
    run = copy.deepcopy(tiny_run_dict)
    run["data"] = {split: vars(coco_writer(split, images, anns, {1: "box"}))
                   for split in ("train", "val")}
    return run


def test_synthetic_data_is_made_again_in_the_nodes_own_cache(
        tiny_run_dict: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DETR_SEARCH_CACHE", str(tmp_path / "driver-cache"))
    record = data_record(tiny_run_dict, "space.yaml", on_cluster=False)
    driver_copy = Path(record["driver_copy"])
    assert record["kind"] == "synthetic"
    assert record["data"] == {"synthetic": tiny_run_dict["data"]["synthetic"] | {
        "task": "shapes", "min_objects": 1, "max_objects": 3, "seed": 0}}
    assert driver_copy.is_relative_to(tmp_path / "driver-cache")

    # another node: its own cache, nothing there yet
    monkeypatch.setenv("DETR_SEARCH_CACHE", str(tmp_path / "node-cache"))
    run = run_config_from_dict({**tiny_run_dict, "data": data_section(record)})
    prepared = prepare_on_node(record, run.data)
    node_copy = prepared.train.annotation_file.parent
    assert node_copy.is_relative_to(tmp_path / "node-cache")
    assert node_copy.name == driver_copy.name  # the same cache key: the same parameters
    for split in ("train", "val", "test"):
        assert filecmp.cmp(node_copy / f"{split}.json", driver_copy / f"{split}.json",
                           shallow=False)
    first = sorted((node_copy / "train").iterdir())
    assert [p.name for p in first] == sorted(p.name for p in (driver_copy / "train").iterdir())
    assert filecmp.cmp(first[0], driver_copy / "train" / first[0].name, shallow=False)
    line = capsys.readouterr().out.strip()
    assert line == f"data: synthetic dataset {node_copy} on node {socket.gethostname()}"


def test_coco_paths_missing_on_the_node_fail_with_one_line_naming_node_and_path(
        tiny_run_dict: dict[str, Any], coco_writer: Any) -> None:
    run = _coco_run(tiny_run_dict, coco_writer)
    record = data_record(run, "space.yaml", on_cluster=False)
    summary = record.pop("summary")
    assert record == {"kind": "coco", "data": run["data"], "validated": True}
    assert [line.split()[:3] for line in summary] == [["train", "2", "images,"],
                                                     ["val", "2", "images,"]]
    config = run_config_from_dict({**run, "data": data_section(record)})
    assert len(prepare_on_node(record, config.data).train.coco.imgs) == 2

    shutil.rmtree(run["data"]["val"]["images"])  # not on this node's disk
    with pytest.raises(UserInputError) as exc:
        prepare_on_node(record, config.data)
    message = str(exc.value)
    assert message == (f"node {socket.gethostname()}: data.val.images: "
                       f"{run['data']['val']['images']} is not on this node; on a cluster every "
                       "node must see the data at the same path (shared storage)")


def test_coco_data_the_driver_cannot_see(tiny_run_dict: dict[str, Any], coco_writer: Any,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = _coco_run(tiny_run_dict, coco_writer)
    Path(run["data"]["train"]["annotations"]).unlink()
    # a local search: the driver's machine is where the trials run, so it is the user's error
    with pytest.raises(UserInputError, match=r"train\.json"):
        data_record(run, "space.yaml", on_cluster=False)
    # joining a cluster: a warning, and each trial validates the data on its node
    record = data_record(run, "space.yaml", on_cluster=True)
    assert record == {"kind": "coco", "data": run["data"], "validated": False, "summary": []}
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: data.train.annotations {run['data']['train']['annotations']} is "
                   "not on this machine; each trial checks the data on the node that trains it"]


def test_a_record_of_an_older_experiment_is_read_as_validated_coco_paths() -> None:
    old = {"train": {"annotations": "/d/train.json", "images": "/d/train"},
           "val": {"annotations": "/d/val.json", "images": "/d/val"}}
    assert data_section(old) == old


def test_resume_checks_the_recorded_coco_data_again(
        tiny_run_dict: dict[str, Any], coco_writer: Any) -> None:
    """`--resume` re-reads prepared_data.json with the search's base run: an unchanged dataset
    gives the same record, an image deleted since the first session is one line naming it."""
    from search.trial.node_data import revalidate_record

    run = _coco_run(tiny_run_dict, coco_writer)
    record = data_record(run, "space.yaml", on_cluster=False)
    base = {k: v for k, v in run.items() if k != "data"}  # the model etc. of the search's base
    assert revalidate_record(record, base, "prepared_data.json", on_cluster=False) == record

    image = next(Path(record["data"]["train"]["images"]).iterdir())
    image.unlink()
    with pytest.raises(UserInputError) as info:
        revalidate_record(record, base, "prepared_data.json", on_cluster=False)
    assert image.name in str(info.value)
