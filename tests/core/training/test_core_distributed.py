"""A run as one rank of a data-parallel job: two gloo processes against one without a process
group (`ddp_rank.py`), on the same fixed inputs.

- RT-DETR's loss divides by the box count of all ranks: the ranks' mean term equals the one
  process's on the whole batch (ranks hold 2 and 7 boxes: divided by their own count, the mean
  would be off by far more than the tolerance).
- An evaluation covers the whole validation split (7 images on 2 ranks: one padding duplicate
  dropped) and every rank computes the same metrics as the one process.
- Trainable batch norm keeps its running statistics on CPU ranks, and only rank 0 keeps a model.
- 2 workers of batch 4 follow the validation loss curve of 1 process of batch 8 (within the
  seed spread, `CURVE_TOLERANCE`), and the job run again gives the very same curve.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

RANK_SCRIPT = Path(__file__).with_name("ddp_rank.py")
# float32 sums in a different order (gathered batches, a reduced count): a few ulps
TOLERANCE = 1e-5


def _run_ranks(folder: Path, mode: str, jobs: dict[str, tuple[int, int, dict]]) -> dict:
    """Start every job (name -> rank, world, run config) at once; their OUT_JSON reports. The
    ranks of one world meet at one rendezvous file."""
    rendezvous = {world: folder / f"rendezvous-{world}" for _, world, _ in jobs.values()}
    processes = {}
    for name, (rank, world, run) in jobs.items():
        (folder / f"{name}.run.json").write_text(json.dumps(run))
        processes[name] = subprocess.Popen(
            [sys.executable, str(RANK_SCRIPT), mode, str(rank), str(world), str(rendezvous[world]),
             str(folder / f"{name}.run.json"), str(folder / f"{name}.json")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for name, process in processes.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"{name}:\n{output[-3000:]}"
    return {name: json.loads((folder / f"{name}.json").read_text()) for name in jobs}


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory,
            tiny_run_template: dict[str, Any]) -> dict[str, Any]:
    run = copy.deepcopy(tiny_run_template)
    run["data"]["synthetic"].update(num_train=8, num_val=7)
    run["training_args"].update(max_steps=2, logging_steps=2, learning_rate=1e-12,
                                per_device_train_batch_size=2, per_device_eval_batch_size=2)
    run["num_threads"] = 1
    return _run_ranks(tmp_path_factory.mktemp("ddp"), "checks",
                      {"single": (0, 1, run), "rank0": (0, 2, run), "rank1": (1, 2, run)})


def test_rt_detr_loss_divides_by_the_box_count_of_all_ranks(reports: dict[str, Any]) -> None:
    single = reports["single"]["loss"]
    ranks = [reports["rank0"]["loss"], reports["rank1"]["loss"]]
    assert [r["boxes"] for r in ranks] == [2, 7] and single["boxes"] == 9
    for term in ("loss_bbox", "loss_iou", "loss_vfl"):
        mean = sum(r["terms"][term] for r in ranks) / 2
        assert mean == pytest.approx(single["terms"][term], rel=TOLERANCE), term


def test_every_rank_evaluates_the_whole_validation_split(reports: dict[str, Any]) -> None:
    """Per-image metrics match exactly. Loss terms are batch means: the last global batch holds
    one padding duplicate whose boxes count in its rank's normalisation, hence 10 % (the box
    counts of DETR's upstream loss under DDP, the mean / ranks, gave 1.7x)."""
    single = reports["single"]["evaluation"]["metrics"]
    for rank in ("rank0", "rank1"):
        metrics = reports[rank]["evaluation"]["metrics"]
        for key in ("eval_map", "eval_map_50", "eval_map_75", "eval_recall", "eval_iou_mean"):
            assert metrics[key] == pytest.approx(single[key], rel=TOLERANCE, abs=1e-7), (rank, key)
        for key in ("eval_loss", "eval_loss_bbox", "eval_loss_iou", "eval_loss_ce"):
            assert metrics[key] == pytest.approx(single[key], rel=0.1), (rank, key)


def test_only_rank_0_keeps_the_best_model(reports: dict[str, Any]) -> None:
    assert reports["single"]["evaluation"]["best_model"]
    assert reports["rank0"]["evaluation"]["best_model"]
    assert not reports["rank1"]["evaluation"]["best_model"]


def test_batch_norm_statistics_are_frozen_on_cpu_ranks(reports: dict[str, Any]) -> None:
    assert reports["single"]["batch_norm"] == {"said": None, "moved": True}
    for rank in ("rank0", "rank1"):
        said = reports[rank]["batch_norm"]
        assert not said["moved"] and "running statistics frozen" in said["said"]


#: 2 workers of batch 4 against 1 process of batch 8 (the same seed: the same initial weights;
#: each rank its own augmentations, another image order): the mean distance of their validation
#: loss curves must stay within 1.5 x the seed spread, the mean distance between the curves of
#: 1 process with seeds 42, 43 and 44. Set after a pilot in which one pair of seeds (42, 43)
#: understated the spread: 0.020 there, 0.072 and 0.085 for the pairs with seed 44.
CURVE_TOLERANCE = 1.5
CURVE_KEYS = ("eval_loss", "eval_loss_bbox")
SEEDS = (42, 43, 44)


def _distance(a: list[dict], b: list[dict], key: str) -> float:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    return sum(abs(x[key] - y[key]) for x, y in zip(a, b, strict=True)) / len(a)


def test_two_workers_follow_the_loss_curve_of_one_process(
        tmp_path_factory: pytest.TempPathFactory, tiny_run_template: dict[str, Any]) -> None:
    run = copy.deepcopy(tiny_run_template)
    run["training_args"].update(max_steps=24, logging_steps=4, per_device_train_batch_size=8)
    run.update(num_threads=1, seed=SEEDS[0])
    halved = copy.deepcopy(run)
    halved["training_args"]["per_device_train_batch_size"] = 4  # x 2 workers: the same batch
    jobs = {f"one{seed}": (0, 1, {**copy.deepcopy(run), "seed": seed}) for seed in SEEDS}
    jobs.update(two_rank0=(0, 2, halved), two_rank1=(1, 2, halved))
    curves = {name: report["history"] for name, report in
              _run_ranks(tmp_path_factory.mktemp("curves"), "curve", jobs).items()}
    for row0, row1 in zip(curves["two_rank0"], curves["two_rank1"], strict=True):
        assert [row0[k] for k in CURVE_KEYS] == [row1[k] for k in CURVE_KEYS]  # the same metrics
    # every rank seeded: the job again gives the very same curve
    again = _run_ranks(tmp_path_factory.mktemp("again"), "curve",
                       {"rank0": (0, 2, halved), "rank1": (1, 2, halved)})["rank0"]["history"]
    first = [[r[k] for k in CURVE_KEYS] for r in curves["two_rank0"]]
    assert [[r[k] for k in CURVE_KEYS] for r in again] == first, (again, first)
    pairs = [(a, b) for i, a in enumerate(SEEDS) for b in SEEDS[i + 1:]]
    for key in CURVE_KEYS:
        spread = sum(_distance(curves[f"one{a}"], curves[f"one{b}"], key)
                     for a, b in pairs) / len(pairs)
        distance = _distance(curves[f"one{SEEDS[0]}"], curves["two_rank0"], key)
        print(f"{key}: 2 workers vs 1 process {distance:.4f}, seed spread {spread:.4f}")
        assert distance <= CURVE_TOLERANCE * spread, (key, distance, spread)
