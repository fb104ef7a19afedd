"""A trial's scratch folder: removed when the trial ends; a SIGKILLed trial's folder is swept
by the next trial on the node, a live process's folder never is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from search_helpers import REPO_ROOT

from search.trial.trainable import sweep_orphaned_work_dirs, trial_work_dir

HOLD_A_WORK_DIR = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from search.trial.trainable import trial_work_dir
    with trial_work_dir(Path(sys.argv[1])) as folder:
        (folder / "checkpoint.bin").write_bytes(b"x" * 1024)
        print(folder, flush=True)
        time.sleep(60)
""")


def _hold(parent: Path) -> tuple[subprocess.Popen, Path]:
    """A real process inside `trial_work_dir`, and its folder."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_A_WORK_DIR, str(parent)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)
    folder = Path(proc.stdout.readline().strip())
    assert folder.is_dir() and folder.parent == parent
    return proc, folder


def test_the_folder_is_removed_when_the_trial_ends_or_fails(tmp_path: Path) -> None:
    with trial_work_dir(tmp_path) as folder:
        assert folder.name.startswith("detr-trial-")
        assert folder.name.split("-")[-2] == str(os.getpid())
        (folder / "run").mkdir()
    assert not folder.exists()
    with pytest.raises(RuntimeError), trial_work_dir(tmp_path) as failed:
        raise RuntimeError("training failed")
    assert not failed.exists()


def test_a_killed_trials_folder_is_swept_by_the_next_trial_a_live_ones_kept(
        tmp_path: Path) -> None:
    killed, orphan = _hold(tmp_path)
    live, kept = _hold(tmp_path)
    other = tmp_path / "detr-trial-notapid"  # not a name this module writes
    other.mkdir()
    # the same dead process id on another host (a container sharing the temp dir)
    elsewhere = tmp_path / orphan.name.replace("detr-trial-", "detr-trial-otherhost", 1)
    elsewhere.mkdir()
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
        assert orphan.is_dir()  # SIGKILL: the trial's own clean-up never ran
        with trial_work_dir(tmp_path) as mine:
            assert not orphan.exists()
            assert kept.is_dir() and other.is_dir() and elsewhere.is_dir() and mine.is_dir()
        assert sweep_orphaned_work_dirs(tmp_path) == []
    finally:
        live.kill()
        live.wait(timeout=10)
    assert sweep_orphaned_work_dirs(tmp_path) == [kept]
    assert other.is_dir() and elsewhere.is_dir()


def test_train_runs_of_data_parallel_trials_are_swept_and_nothing_else(tmp_path: Path) -> None:
    """After `Tuner.fit` the driver removes each trial's Train run folders (their checkpoints
    were copied into Tune's); the trial's own checkpoint, files and other folders stay."""
    from search.trial.data_parallel import TRAIN_RUN_PREFIX, remove_train_runs

    trial = tmp_path / "train_detr_abc_1"
    kept = [trial / "checkpoint_000002" / "model.safetensors", trial / "result.json",
            trial / "notes" / f"{TRAIN_RUN_PREFIX}x.txt"]
    swept = [trial / f"{TRAIN_RUN_PREFIX}1234abcd" / "checkpoint_000002" / "model.safetensors"]
    for path in kept + swept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (tmp_path / "trials.csv").write_text("x")  # a file beside the trial folders
    remove_train_runs(tmp_path)
    assert all(path.is_file() for path in kept)
    assert not (trial / f"{TRAIN_RUN_PREFIX}1234abcd").exists()
    remove_train_runs(tmp_path / "missing")  # nothing there: nothing to do


def test_a_data_parallel_trial_books_only_its_driver_with_tune() -> None:
    """Tune books the trial's driver alone (no CPU: its workers' placement group is Train's);
    a one-process trial books its CPUs and GPUs as before."""
    from search.running.driver import trial_resources
    from search.space.spec import ResourceSpec
    from search.trial.trainable import data_parallel_workers

    one = SimpleNamespace(resources=ResourceSpec(cpus_per_trial=2, gpus_per_trial=0.5))
    assert trial_resources(one) == {"cpu": 2.0, "gpu": 0.5}
    assert data_parallel_workers(one.resources, "/r/x") is None
    job = SimpleNamespace(resources=ResourceSpec(workers_per_trial=2, cpus_per_worker=1))
    (bundle,) = trial_resources(job).bundles
    assert bundle.get("CPU", 0) == 0 and bundle["memory"] > 0
    assert data_parallel_workers(job.resources, "s3://b/x") == {
        "workers_per_trial": 2, "cpus_per_worker": 1.0, "gpus_per_worker": 0.0,
        "storage": "s3://b/x"}
