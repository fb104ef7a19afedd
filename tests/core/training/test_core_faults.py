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

REPO = Path(__file__).resolve().parents[3]
MAX_STEPS = 400


def _run_config(folder: Path) -> Path:
    writer = CocoWriter(folder / "coco")
    data = {}
    for split, count in (("train", 32), ("val", 8)):
        paths = writer(split, [{"id": i} for i in range(1, count + 1)],
                       [{"image_id": i, "category_id": 1, "bbox": [8, 6, 24, 20]}
                        for i in range(1, count + 1)], {1: "thing"})
        data[split] = {"annotations": paths.annotations, "images": paths.images}
    raw = {**TINY_RUN, "data": data,
           "training_args": {**TINY_RUN["training_args"], "max_steps": MAX_STEPS}}
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _start(folder: Path) -> tuple[subprocess.Popen[str], Path]:
    out = folder / "out"
    # DETR_SEARCH_IMAGE_CACHE_MB=0: the image damaged mid-run is read from disk again
    env = {**os.environ, "PYTHONPATH": str(REPO), "DETR_SEARCH_IMAGE_CACHE_MB": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "detr_core.train", "--config", str(_run_config(folder)),
         "--output-dir", str(out)], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    return proc, out


def _wait_for_first_evaluation(proc: subprocess.Popen[str], out: Path) -> None:
    deadline = time.monotonic() + 180
    history = out / "eval_history.jsonl"
    while time.monotonic() < deadline:  # a best step is on disk once the first eval is
        if history.is_file() and history.read_text().count("\n") >= 2:
            return
        if proc.poll() is not None:
            raise AssertionError(proc.communicate())
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("no evaluation in time")


def _kept_model(out: Path) -> int:
    """The best model so far is a folder that loads; returns its step."""
    from transformers import DetrForObjectDetection

    from detr_core.model.model_check import check_model_folder

    folder = out / "best_model"
    check_model_folder(folder)
    DetrForObjectDetection.from_pretrained(folder)
    return int(json.loads((folder / "best_step.json").read_text())["step"])


def test_a_run_hit_mid_way_keeps_its_best_model_and_says_where(tmp_path: Path) -> None:
    """Two runs side by side: one loses an image file, the other gets Ctrl-C."""
    broken, broken_out = _start(tmp_path / "unreadable")
    stopped, stopped_out = _start(tmp_path / "ctrl_c")
    try:
        _wait_for_first_evaluation(broken, broken_out)
        victim = tmp_path / "unreadable" / "coco" / "train" / "7.png"
        victim.write_bytes(victim.read_bytes()[:64])
        _wait_for_first_evaluation(stopped, stopped_out)
        os.killpg(stopped.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        _, broken_err = broken.communicate(timeout=180)
        _, stopped_err = stopped.communicate(timeout=180)
    finally:
        for proc in (broken, stopped):
            if proc.poll() is None:
                proc.kill()

    # the unreadable image: exit 2, exactly one line naming the file and its image id
    assert broken.returncode == 2, broken_err
    lines = broken_err.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    annotations = tmp_path / "unreadable" / "coco" / "train.json"
    assert line.startswith(f"error: {annotations}: image id 7: image file {victim} cannot be "
                           "read during training: "), line
    step = _kept_model(broken_out)
    assert f"the best model so far (step {step}, eval_loss_bbox " in line
    assert line.endswith(f"is in {broken_out / 'best_model'}")

    # Ctrl-C: exit 130, the last line says where the best model so far is
    assert stopped.returncode == 130, stopped_err
    last = stopped_err.strip().splitlines()[-1]
    step = _kept_model(stopped_out)
    assert last.startswith("interrupted at step "), last
    assert f"of {MAX_STEPS}: the best model so far (step {step}, eval_loss_bbox " in last
    assert last.endswith(f"is in {stopped_out / 'best_model'}"), last
    assert "Traceback" not in stopped_err
