"""A trial's scratch folder: removed when the trial ends; a SIGKILLed trial's folder is swept
by the next trial on the node, a live process's folder never is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

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
