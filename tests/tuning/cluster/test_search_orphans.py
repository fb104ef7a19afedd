"""The processes a driver's local Ray cluster leaves when the driver dies, ended by the watchdog
or by the next driver of the same experiment, and nobody else's: real processes, real signals
(stand-ins for Ray's processes, marked the way Ray's inherit the mark; no Ray needed).

The end-to-end proof with Ray itself (driver SIGKILL -> nothing left 30 s later) is in
`test_search_interrupts.py`; a search that joins a cluster with `--address` leaves that cluster
running (`test_search_cluster.py`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from detr_core.files.errors import UserInputError
from search.cluster.local_cluster import LocalCluster
from search.cluster.orphans import (
    OWNER_ENV,
    OwnerRecord,
    end_orphans_of,
    own_processes,
    record_path,
    started_local_cluster,
    write_owner_record,
)
from search.cluster.watchdog import start_watchdog

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _sleepers(owner: str | None, count: int) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if k != OWNER_ENV}
    if owner is not None:
        env[OWNER_ENV] = owner
    return [subprocess.Popen(SLEEPER, env=env) for _ in range(count)]


def _alive(proc: subprocess.Popen) -> bool:
    return proc.poll() is None


def _dead_driver() -> tuple[int, float]:
    """The pid and start time of a process that has exited (a driver that was killed)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(proc.pid).create_time()
    proc.wait()
    return proc.pid, started


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if _alive(proc):
            proc.kill()
            proc.wait()


def _write_record(experiment: str, owner: str, pid: int, started: float,
                  host: str | None = None) -> None:
    path = record_path(experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = OwnerRecord(owner, pid, started, host or socket.gethostname(), experiment)
    path.write_text(__import__("json").dumps(record.__dict__))


def test_next_driver_ends_only_the_orphans_of_its_experiment(processes: list) -> None:
    orphans = _sleepers("dead-driver-owner", 2)
    others = _sleepers("another-driver-owner", 1) + _sleepers(None, 1)
    processes += orphans + others
    experiment = "/results/iou-orphans"
    _write_record(experiment, "dead-driver-owner", *_dead_driver())
    time.sleep(0.3)  # the interpreters are up (their environment is readable)

    note = end_orphans_of(experiment)

    assert note is not None and note.startswith("ended 2 Ray process(es) left by the earlier "
                                                "driver (pid "), note
    for proc in orphans:
        proc.wait(timeout=10)
        assert proc.returncode is not None
    assert all(_alive(p) for p in others)  # another driver's, and an unmarked one
    assert not record_path(experiment).exists()
    assert end_orphans_of(experiment) is None  # nothing left to say


def test_a_live_driver_of_the_experiment_is_not_touched(processes: list) -> None:
    marked = _sleepers("live-owner", 1)
    processes += marked
    experiment = "/results/iou-live"
    me = psutil.Process()
    _write_record(experiment, "live-owner", me.pid, me.create_time())
    with pytest.raises(UserInputError, match="being run by another driver"):
        end_orphans_of(experiment)
    assert _alive(marked[0])
    _write_record(experiment, "live-owner", *_dead_driver(), host="some-other-machine")
    assert end_orphans_of(experiment) is None  # another machine's processes are not ours
    assert _alive(marked[0])


def test_watchdog_ends_the_marked_processes_once_the_driver_is_gone(
        processes: list, tmp_path: Path) -> None:
    marked = _sleepers("watched-owner", 2)
    bystander = _sleepers(None, 1)
    processes += marked + bystander
    log = tmp_path / "watchdog.log"
    watchdog = start_watchdog("watched-owner", log)
    assert OWNER_ENV not in psutil.Process(watchdog.process.pid).environ()  # not marked itself
    time.sleep(0.5)
    assert all(_alive(p) for p in marked)  # nothing happens while the driver lives
    watchdog.process.stdin.close()  # the driver died: its end of the pipe is closed
    assert watchdog.process.wait(timeout=30) == 0
    for proc in marked:
        proc.wait(timeout=10)
    assert _alive(bystander[0])
    assert "ended without shutting Ray down; ended 2 Ray process(es)" in log.read_text()


def test_a_driver_that_joined_a_cluster_records_and_watches_nothing(tmp_path: Path) -> None:
    """No raylet of its own (a `ray.init` that joined a running cluster): hands off."""
    assert not started_local_cluster()
    experiment = str(tmp_path / "joined")
    cluster = LocalCluster(experiment)
    try:
        cluster.started(interrupts=None)
        assert cluster.watchdog is None
        assert not record_path(experiment).exists()
        assert own_processes(cluster.owner) == []
    finally:
        cluster.stop()
    assert OWNER_ENV not in os.environ


def test_owner_record_is_written_for_this_driver(tmp_path: Path) -> None:
    experiment = str(tmp_path / "mine")
    write_owner_record(experiment, "me")
    with pytest.raises(UserInputError, match=f"pid {os.getpid()}"):
        end_orphans_of(experiment)
    record_path(experiment).unlink()
