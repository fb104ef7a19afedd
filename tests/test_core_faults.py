"""`python -m detr_core.train` as a real process, hit mid-run: an image file that becomes
unreadable, and a Ctrl-C. Either way the run ends with one line that says what happened and
keeps the best model it had (a `save_pretrained` folder that loads), and exits 2 / 130.

Each run trains the tiny preset on a small COCO dataset of this test's own (real PNG files),
long enough that the test can act once the first evaluation is on disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY_RUN, CocoWriter

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MAX_STEPS = 400


def _run_config(tmp_path: Path) -> Path:
    writer = CocoWriter(tmp_path / "coco")
    data = {}
    for split, count in (("train", 32), ("val", 8)):
        paths = writer(split, [{"id": i} for i in range(1, count + 1)],
                       [{"image_id": i, "category_id": 1, "bbox": [8, 6, 24, 20]}
                        for i in range(1, count + 1)], {1: "thing"})
        data[split] = {"annotations": paths.annotations, "images": paths.images}
    raw = {**TINY_RUN, "data": data,
           "training_args": {**TINY_RUN["training_args"], "max_steps": MAX_STEPS}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _start(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "detr_core.train", "--config", str(_run_config(tmp_path)),
         "--output-dir", str(out)], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    history = out / "eval_history.jsonl"
    while time.monotonic() < deadline:  # a best step is on disk once the first eval is
        if history.is_file() and history.read_text().count("\n") >= 2:
            return proc, out
        if proc.poll() is not None:
            raise AssertionError(proc.communicate())
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("no evaluation in time")


def _kept_model(out: Path) -> int:
    """The best model so far is a folder that loads; returns its step."""
    from transformers import DetrForObjectDetection

    from detr_core.model_check import check_model_folder

    folder = out / "best_model"
    check_model_folder(folder)
    DetrForObjectDetection.from_pretrained(folder)
    return int(json.loads((folder / "best_step.json").read_text())["step"])


def test_an_image_unreadable_mid_run_is_one_line_and_the_best_model_is_kept(
        tmp_path: Path) -> None:
    proc, out = _start(tmp_path)
    victim = tmp_path / "coco" / "train" / "7.png"
    victim.write_bytes(victim.read_bytes()[:64])
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"error: {tmp_path / 'coco' / 'train.json'}: image id 7: image file "
                           f"{victim} cannot be read during training: "), line
    step = _kept_model(out)
    assert f"the best model so far (step {step}, eval_loss_bbox " in line
    assert line.endswith(f"is in {out / 'best_model'}")


def test_ctrl_c_keeps_the_best_model_and_says_where(tmp_path: Path) -> None:
    proc, out = _start(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    step = _kept_model(out)
    assert last.startswith("interrupted at step "), last
    assert f"of {MAX_STEPS}: the best model so far (step {step}, eval_loss_bbox " in last
    assert last.endswith(f"is in {out / 'best_model'}"), last
    assert "Traceback" not in err
