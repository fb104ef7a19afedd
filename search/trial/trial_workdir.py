"""A trial's scratch folder on its node, and the sweep of those a killed trial left behind.

Each trial trains in a temporary folder (the Trainer's checkpoints and the restored
checkpoint, several MB) and removes it when it ends. A trial whose process is killed (a
worker SIGKILL, a driver killed or quitting at once, the node's OOM killer) never gets to
remove it, so the folder carries the host and the owning process id in its name,
`detr-trial-<host>-<pid>-*`, and every trial that starts on the node first removes this
host's folders whose process is gone. Folders of live processes, of other users and of other
hosts (containers sharing a temp dir have their own process ids) are left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
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


def _host_prefix() -> str:
    """`detr-trial-<host>-`, the host name reduced to characters safe in a file name."""
    return f"{PREFIX}{re.sub(r'[^A-Za-z0-9.]', '_', socket.gethostname())}-"


def _owner_pid(folder: Path, host_prefix: str) -> int | None:
    """The process id in `<host_prefix><pid>-<random>`; None for any other name."""
    if not folder.name.startswith(host_prefix):
        return None
    pid, _, rest = folder.name.removeprefix(host_prefix).partition("-")
    return int(pid) if pid.isdigit() and rest else None


def sweep_orphaned_work_dirs(parent: Path | None = None) -> list[Path]:
    """Remove this user's trial folders under `parent` (the temp dir) whose process is gone."""
    parent = Path(parent or tempfile.gettempdir())
    host_prefix = _host_prefix()
    removed = []
    for folder in parent.glob(f"{PREFIX}*"):
        pid = _owner_pid(folder, host_prefix)
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
    folder = Path(tempfile.mkdtemp(prefix=f"{_host_prefix()}{os.getpid()}-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
