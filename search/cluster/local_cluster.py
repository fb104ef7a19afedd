"""The driver's handle on a local Ray cluster it starts itself: marked, recorded, watched.

    cluster = LocalCluster(experiment)      # marks this process's environment
    (search.cluster.orphans)
    ray.init(...)                           # every Ray process inherits the mark
    cluster.started(interrupts)             # owner record + watchdog; 2nd Ctrl-C ends them
    ...
    ray.shutdown(); cluster.stop()          # record removed, watchdog sweeps once and exits

Only a cluster this driver started is ever touched: `started` checks that the driver runs
Ray's head processes itself (a `ray.init()` that joined a running cluster through
`RAY_ADDRESS` is left alone), and a search with `--address` makes no `LocalCluster` at all.
"""

from __future__ import annotations

import os
from typing import Any

from search.cluster.orphans import (
    OWNER_ENV,
    end_orphans_of,
    end_own_processes,
    mark_own_processes,
    record_path,
    remove_owner_record,
    started_local_cluster,
    write_owner_record,
)
from search.cluster.watchdog import Watchdog, start_watchdog


class LocalCluster:
    """See the module docstring."""

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment
        self.owner = mark_own_processes()
        self.watchdog: Watchdog | None = None

    @staticmethod
    def end_orphans_of(experiment: str) -> None:
        """End what an earlier, killed driver of `experiment` left running, and say so."""
        note = end_orphans_of(experiment)
        if note:
            print(note, flush=True)

    def started(self, interrupts: Any) -> None:
        """After `ray.init()`: record and watch the cluster if this driver started it."""
        if not started_local_cluster():
            return
        write_owner_record(self.experiment, self.owner)
        self.watchdog = start_watchdog(
            self.owner, record_path(self.experiment).with_suffix(".watchdog.log"))
        interrupts.quit_now = self.end_now

    def end_now(self) -> None:
        """A second Ctrl-C, just before this driver exits: its watchdog ends the cluster's
        processes when the exit closes its pipe. Ending them here instead lets Ray's core
        worker see its raylet die and end this process first, with exit code 1 (seen in CI)."""
        if self.watchdog is None:
            end_own_processes(self.owner, grace_s=1.0, sweeps=2)

    def stop(self) -> None:
        """After `ray.shutdown()`: forget the record; the watchdog sweeps once and exits."""
        remove_owner_record(self.experiment, self.owner)
        if self.watchdog is not None:
            self.watchdog.stop()
        if os.environ.get(OWNER_ENV) == self.owner:
            del os.environ[OWNER_ENV]
