"""The Ray processes a search driver started itself: marked, recorded, and ended if orphaned.

A driver killed with SIGKILL leaves its busy workers running, re-parented. So it sets a unique
`DETR_SEARCH_RAY_OWNER` before `ray.init`, which every process of its cluster inherits; the
watchdog ends them when the driver is gone, and the `OwnerRecord` lets the next `run.py` of the
experiment end what is left (and refuse a second driver while the first is alive).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from detr_core.data.synthetic import default_cache_root
from detr_core.files.errors import UserInputError
from detr_core.files.file_io import write_json_atomic

OWNER_ENV = "DETR_SEARCH_RAY_OWNER"
#: Names of the processes a local `ray.init()` starts as the driver's children.
_HEAD_PROCESS_NAMES = ("raylet", "gcs_server")


def mark_own_processes() -> str:
    """Set a fresh `DETR_SEARCH_RAY_OWNER` (host, pid, a random part) before `ray.init`."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    os.environ[OWNER_ENV] = owner
    return owner


def started_local_cluster() -> bool:
    """True when this process itself runs Ray's head processes (a local `ray.init()`)."""
    try:
        return any(child.name() in _HEAD_PROCESS_NAMES for child in psutil.Process().children())
    except psutil.Error:
        return False


def own_processes(owner: str, exclude: Iterable[int] = ()) -> list[psutil.Process]:
    """Live processes whose environment carries `owner` (this process and `exclude` left out)."""
    skip = {os.getpid(), *exclude}
    found = []
    for proc in psutil.process_iter():
        if proc.pid in skip:
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get(OWNER_ENV) == owner and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def _running(proc: psutil.Process) -> bool:
    """Alive and not a zombie (an ended process its parent has not reaped yet)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Poll until none of `procs` runs or `timeout_s` passed; the ones still running."""
    deadline = time.monotonic() + timeout_s
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _running(p)]
    return alive


def end_own_processes(owner: str, exclude: Iterable[int] = (), grace_s: float = 5.0,
                      sweeps: int = 3) -> list[str]:
    """End every process marked `owner`: SIGTERM, then SIGKILL what is left after `grace_s`,
    a few sweeps (a dying raylet may still start one); the names of those ended."""
    ended: list[str] = []
    for _ in range(sweeps):
        procs = own_processes(owner, exclude)
        if not procs:
            break
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                ended.append(proc.name())
                proc.send_signal(signal.SIGTERM)
        alive = _wait_gone(procs, grace_s)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        _wait_gone(alive, grace_s)
    return ended


@dataclass
class OwnerRecord:
    """Which driver runs an experiment's local Ray cluster, and how to find its processes."""

    owner: str
    driver_pid: int
    driver_started: float  # psutil create_time: a recycled pid is not the same driver
    host: str
    experiment: str

    def driver_alive(self) -> bool:
        try:
            return psutil.Process(self.driver_pid).create_time() == self.driver_started
        except psutil.Error:
            return False


def record_path(experiment: str) -> Path:
    """`<cache>/drivers/<hash>.json`: the owner record of `experiment` (a path or URI)."""
    digest = hashlib.sha1(experiment.encode()).hexdigest()[:16]
    return default_cache_root() / "drivers" / f"{digest}.json"


def write_owner_record(experiment: str, owner: str) -> Path:
    """Record that this driver runs `experiment`'s local cluster, marked `owner`."""
    me = psutil.Process()
    path = record_path(experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, asdict(OwnerRecord(owner, me.pid, me.create_time(),
                                                      socket.gethostname(), experiment)))


def read_owner_record(experiment: str) -> OwnerRecord | None:
    try:
        return OwnerRecord(**json.loads(record_path(experiment).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def remove_owner_record(experiment: str, owner: str) -> None:
    """Forget the record if it is this driver's (a newer driver's record stays)."""
    record = read_owner_record(experiment)
    if record is not None and record.owner == owner:
        record_path(experiment).unlink(missing_ok=True)


def end_orphans_of(experiment: str) -> str | None:
    """Before a driver starts `experiment`: end what an earlier, dead driver of it left; the
    line to print when processes were ended. A live earlier driver is a `UserInputError`."""
    record = read_owner_record(experiment)
    if record is None or record.host != socket.gethostname():
        return None
    if record.driver_alive():
        raise UserInputError(f"experiment is being run by another driver (pid "
                             f"{record.driver_pid}); wait for it or stop it first",
                             source=experiment)
    ended = end_own_processes(record.owner)
    record_path(experiment).unlink(missing_ok=True)
    if not ended:
        return None
    listing = ", ".join(f"{n} {name}" for name, n in Counter(ended).items())
    return (f"ended {len(ended)} Ray process(es) left by the earlier driver (pid "
            f"{record.driver_pid}) of this experiment: {listing}")
