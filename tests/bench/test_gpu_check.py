"""`benchmarks/gpu_check.py`, the throughput check for a lent GPU, runs end to end on the CPU
(`--smoke`: the same code, 64 px, 1 s a measurement), so it works the day a GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from search_helpers import REPO_ROOT, output_tail

pytestmark = pytest.mark.slow


def test_the_gpu_check_measures_every_model_dtype_and_packing(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "all", str(tmp_path),
                           "--device", "cpu", "--smoke"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, output_tail(proc)
    data = json.loads((tmp_path / "gpu_throughput.json").read_text())
    assert {(r["model"], r["dtype"]) for r in data["rows"]} == {
        (m, d) for m in ("detr-r50", "tiny") for d in ("fp32", "bf16")}
    assert all(r["steps"] >= 1 and r["steps_per_s"] > 0 for r in data["rows"])
    assert sorted(data["packed"]) == ["detr-r50 x2", "tiny x2"]
    assert all(len(runs) == 2 for runs in data["packed"].values())
    report = (tmp_path / "gpu_check.md").read_text()
    assert report.count("| detr-r50 | 64 | 2 |") == 2 and "bf16 / fp32 steps/s" in report
    assert "| tiny | bf16 | 2 |" in report
    # the 2-worker DDP job (gloo here, NCCL on two GPUs): both ranks ran, the table has its rows
    assert sorted(data["data_parallel"]) == ["detr-r50", "tiny"]
    assert all([r["workers"] for r in ranks] == [2, 2] and all(r["steps"] >= 1 for r in ranks)
               for ranks in data["data_parallel"].values())
    assert "## One trial on 2 devices" in report and "| tiny | bf16 | 8 |" in report
