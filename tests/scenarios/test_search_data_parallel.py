"""Data-parallel trials end to end: `search/run.py` with `workers_per_trial: 2` (Ray Train,
2 gloo workers of 1 CPU each, a trial's driver holding none), as a real subprocess.

- A search of three trials (`LEARNING_RATES`): each trial is a 2-worker job whose optimizer steps
  count the global batch (32 images, 4 per worker: 4 steps an epoch), reported once per
  evaluation by rank 0; ASHA stops the second, whose workers are freed for the third (2 cores
  hold one job); the exported model is the winner's best checkpoint, weight for weight.
- A worker killed mid-trial: the job fails, Tune retries the trial (`max_failures: 1`) with new
  workers from its last checkpoint; then Ctrl-C and `--resume`: the trial finishes from its
  checkpoint without reporting a step twice.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml
from search_helpers import (
    RUN_SCRIPT,
    TERMINAL_STATUS_PREFIXES,
    output_tail,
    ray_scope,
    read_results,
    read_trials_csv,
    session_cache,
    start_cli,
    trial_dirs,
    write_space,
)

pytestmark = pytest.mark.slow

SPACE = {"training_args.learning_rate": {"loguniform": [1.0e-6, 3.0e-3]}}
STEPS = 8  # 2 epochs x 32 images / (4 a worker x 2 workers)
#: in order: one that learns, one that does not (ASHA stops it at the first rung), and one that
#: can only start once the stopped trial's workers are freed (2 cores hold one job)
LEARNING_RATES = (3.0e-3, 1.0e-6, 1.0e-3)


@dataclass
class Search:
    experiment_dir: Path
    returncode: int
    output: str
    leftovers: list


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_cache(tmp_path_factory)


def _space(root: Path, name: str, points: list[dict], max_failures: int = 0) -> Path:
    path = write_space(root / "space.yaml", name, SPACE, num_samples=len(points),
                       max_failures=max_failures, max_t=STEPS, grace_period=2,
                       extra_overrides={"training_args.per_device_train_batch_size": 4,
                                        "num_threads": 1})
    doc = yaml.safe_load(path.read_text())
    doc["experiment"]["resources"] = {"workers_per_trial": 2, "cpus_per_worker": 1}
    doc["experiment"]["searcher"]["points_to_evaluate"] = points
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _wait(proc, deadline: float) -> int:
    try:
        return proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Search:
    root = tmp_path_factory.mktemp("data_parallel")
    space = _space(root, "ddp", [{"training_args.learning_rate": lr} for lr in LEARNING_RATES])
    log = root / "search.log"
    with ray_scope(cache) as scope:
        proc = start_cli(RUN_SCRIPT, ["--space", space, "--storage", root / "results"],
                         scope.env, log)
        returncode = _wait(proc, time.monotonic() + 420)
        leftovers = scope.kill_all() if scope.wait_gone(30) else []
    return Search(root / "results" / "ddp", returncode, log.read_text(errors="replace"),
                  leftovers)


def _finished(search: Search) -> Search:
    assert search.returncode == 0, output_tail(search.output)
    return search


def test_each_trial_is_a_two_worker_job_counting_global_steps(search: Search) -> None:
    exp = _finished(search).experiment_dir
    assert "2 workers x 1 CPU, 0 GPU (gloo)" in search.output
    assert search.leftovers == []
    rows = read_trials_csv(exp)
    assert len(rows) == len(LEARNING_RATES)
    for row in rows:
        assert row["status"].startswith(TERMINAL_STATUS_PREFIXES), row
        assert float(row["cpu_s"]) == pytest.approx(2 * float(row["wall_time_s"]))  # 2 x 1 thread
    stopped = next(r for r in rows if float(r["training_args.learning_rate"]) == 1.0e-6)
    assert stopped["status"] == "stopped by ASHA at step 2", stopped
    for trial in trial_dirs(exp):
        results = read_results(trial)
        steps = [r["step"] for r in results]
        assert steps == sorted(set(steps)) and steps[0] == 2, steps  # once per evaluation
        assert all(r["workers"] == 2 and r["total_steps"] == STEPS for r in results)
        assert "data-parallel job data_parallel-" in (trial / "trial.log").read_text()
        assert not list(trial.glob("data_parallel-*"))  # Train's copies removed
    completed = [r for r in rows if r["status"] == "completed"]
    assert completed and max(int(r["best_step"]) for r in completed) <= STEPS


def test_the_best_model_is_the_winners_best_checkpoint(search: Search) -> None:
    from safetensors.torch import load_file

    exp = _finished(search).experiment_dir
    source = json.loads((exp / "best_model" / "export_source.json").read_text())
    winner = next(t for t in trial_dirs(exp) if source["trial_id"] in t.name)
    checkpoints = list(winner.glob("checkpoint_*"))
    assert len(checkpoints) == 1
    meta = json.loads((checkpoints[0] / "checkpoint_meta.json").read_text())
    assert meta["step"] == source["step"]
    kept = load_file(checkpoints[0] / meta["model_dir"] / "model.safetensors")
    exported = load_file(exp / "best_model" / "model.safetensors")
    assert kept.keys() == exported.keys()
    assert all((kept[k] == exported[k]).all() for k in kept)


def _train_workers(scope) -> list[psutil.Process]:
    found = []
    for proc in scope.processes():
        try:
            if "RayTrainWorker" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _steps(exp: Path) -> list[int]:
    trials = trial_dirs(exp) if exp.is_dir() else []
    return [r["step"] for r in read_results(trials[0])] if trials else []


def test_a_killed_worker_retries_and_an_interrupted_search_resumes(
        tmp_path_factory: pytest.TempPathFactory, cache: Path) -> None:
    """A worker SIGKILLed after the first report (step 2, its checkpoint on disk) fails the
    job; Tune retries the trial with new workers from that checkpoint. Its next report (step
    4) waits at the gate; Ctrl-C then stops the search (exit 130) and `--resume` finishes the
    trial from step 4: steps 2, 4, 6, 8, none twice."""
    root = tmp_path_factory.mktemp("worker_kill")
    space = _space(root, "kill", [{"training_args.learning_rate": 3.0e-3}], max_failures=1)
    gate = root / "gate"
    gate.mkdir()
    (gate / "hold").touch()  # the trial waits after each report until released
    log = root / "search.log"
    exp = root / "results" / "kill"
    args = ["--space", space, "--storage", root / "results"]
    with ray_scope(cache, DETR_SEARCH_TRIAL_GATE=str(gate)) as scope:
        proc = start_cli(RUN_SCRIPT, args, scope.env, log, new_session=True)
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline and proc.poll() is None:
            trials = trial_dirs(exp) if exp.is_dir() else []
            if trials and list(trials[0].glob("checkpoint_*")) and len(_train_workers(scope)) == 2:
                break  # step 2 reported with its checkpoint; both ranks wait at the gate
            time.sleep(0.2)
        workers = _train_workers(scope)
        assert len(workers) == 2, output_tail(log.read_text(errors="replace"))
        os.kill(workers[1].pid, signal.SIGKILL)
        while time.monotonic() < deadline and proc.poll() is None and 4 not in _steps(exp):
            time.sleep(0.2)  # the retried job reported step 4 and waits at the gate
        os.killpg(proc.pid, signal.SIGINT)
        interrupted = _wait(proc, deadline)
        first = log.read_text(errors="replace")
        (gate / "hold").unlink()
        resumed = start_cli(RUN_SCRIPT, [*args, "--resume"], scope.env, root / "resume.log")
        returncode = _wait(resumed, deadline)
        leftovers = scope.kill_all() if scope.wait_gone(30) else []
    output = (root / "resume.log").read_text(errors="replace")
    assert interrupted == 130, output_tail(first)
    assert "restarted from step 2" in first, output_tail(first)
    assert returncode == 0, output_tail(output)
    assert leftovers == []
    (row,) = read_trials_csv(exp)
    assert row["status"] == "completed", row
    assert _steps(exp) == [2, 4, 6, 8]  # retried from step 2, resumed from step 4
