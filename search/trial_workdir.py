"""A trial's scratch folder on its node, and the sweep of those a killed trial left behind.

Each trial trains in a temporary folder (the Trainer's checkpoints and the restored
checkpoint, several MB) and removes it when it ends. A trial whose process is killed (a
worker SIGKILL, a driver killed or quitting at once, the node's OOM killer) never gets to
remove it, so the folder carries the owning process id in its name, `detr-trial-<pid>-*`, and
every trial that starts on the node first removes the folders whose process is gone. Folders
of live processes, and of other users (not ours to judge), are left alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = "detr-trial-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _owner_pid(folder: Path) -> int | None:
    """The process id in `detr-trial-<pid>-<random>`; None for any other name."""
    pid, _, rest = folder.name.removeprefix(PREFIX).partition("-")
    return int(pid) if pid.isdigit() and rest else None


def sweep_orphaned_work_dirs(parent: Path | None = None) -> list[Path]:
    """Remove this user's trial folders under `parent` (the temp dir) whose process is gone."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    for folder in parent.glob(f"{PREFIX}*"):
        pid = _owner_pid(folder)
        if pid is None or pid == os.getpid() or _process_alive(pid):
            continue
        try:
            if not folder.is_dir() or folder.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


@contextmanager
def trial_work_dir(parent: Path | None = None) -> Iterator[Path]:
    """A fresh scratch folder for one trial, removed when it ends; orphans swept first."""
    sweep_orphaned_work_dirs(parent)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
