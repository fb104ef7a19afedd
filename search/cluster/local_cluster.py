"""The driver's handle on a local Ray cluster it starts itself (never one it joined), and
whether a trial (or each worker of a data-parallel trial) fits on a node: Tune waits silently
for resources that never come (`gpus_per_trial: 1` without a GPU hung a search).

    cluster = LocalCluster(experiment)   # marks this process's environment (`orphans`)
    ray.init(...)                        # every Ray process inherits the mark
    cluster.started(interrupts)          # owner record + watchdog; a 2nd Ctrl-C ends them
    ray.shutdown(); cluster.stop()       # record removed, the watchdog sweeps once and exits
"""

from __future__ import annotations

import os
from typing import Any

from detr_core.files.errors import UserInputError
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


def check_trials_fit(spec: Any, joined: bool) -> None:
    """A trial's CPUs and GPUs must fit on one alive node; a data-parallel trial's must fit
    one worker on a node and its workers on the nodes together. On a `joined` cluster an
    autoscaler may still add nodes (a warning, not an error)."""
    import ray

    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    res = spec.resources
    problems = (_workers_problems(res, nodes) if res.workers_per_trial > 1
                else _trial_problems(res, nodes))
    for key, problem, where in problems:
        if joined:
            print(f"warning: {problem}; the search waits for the cluster to add one", flush=True)
            continue
        raise UserInputError(f"{problem} (lower it{where}, or join a cluster that has them "
                             "with --address)", source=str(spec.source),
                             key=f"experiment.resources.{key}")


def _most(nodes: list[dict[str, float]], resource: str) -> float:
    return max((node.get(resource, 0.0) for node in nodes), default=0.0)


def _trial_problems(res: Any, nodes: list[dict[str, float]]) -> list[tuple[str, str, str]]:
    """(key, problem, where to lower it) for a one-process trial no node holds."""
    problems = []
    for resource, key in (("CPU", "cpus_per_trial"), ("GPU", "gpus_per_trial")):
        amount, most = getattr(res, key), _most(nodes, resource)
        if amount > most:
            problems.append((key, f"a trial asks for {amount:g} {resource}, but no node of the "
                                  f"Ray cluster has more than {most:g}",
                             f", here or with --{key.replace('_', '-')}"))
    return problems


def _workers_problems(res: Any, nodes: list[dict[str, float]]) -> list[tuple[str, str, str]]:
    """(key, problem, where to lower it) for workers that do not fit (Ray Train places each
    worker's CPUs and GPUs together on one node, the workers spread over the nodes)."""
    asks = [(resource, amount) for resource, amount in (("CPU", res.cpus_per_worker),
                                                        ("GPU", res.gpus_per_worker))
            if resource == "CPU" or amount > 0]
    for resource, amount in asks:
        most = _most(nodes, resource)
        if amount > most:
            key = f"{resource.lower()}s_per_worker"
            return [(key, f"a trial's worker asks for {amount:g} {resource}, but no node of the "
                          f"Ray cluster has more than {most:g}", " in the space file")]
    workers = res.workers_per_trial
    held = sum(min(int(node.get(resource, 0.0) / amount + 1e-9) for resource, amount in asks)
               for node in nodes)
    if held >= workers:
        return []
    need = " + ".join(f"{workers * amount:g} {resource}s" for resource, amount in asks)
    each = ", ".join(f"{amount:g} {resource}" for resource, amount in asks)
    return [("workers_per_trial", f"a trial's {workers} workers x {each} need {need}, but the "
                                  f"Ray cluster's nodes hold only {held} such workers",
             " in the space file")]


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
        """A second Ctrl-C: the watchdog ends the processes once this driver has exited; ended
        here, Ray's worker would see its raylet die and exit 1 first (seen in CI)."""
        if self.watchdog is None:
            end_own_processes(self.owner, grace_s=1.0, sweeps=2)

    def stop(self) -> None:
        """After `ray.shutdown()`: forget the record; the watchdog sweeps once and exits."""
        remove_owner_record(self.experiment, self.owner)
        if self.watchdog is not None:
            self.watchdog.stop()
        if os.environ.get(OWNER_ENV) == self.owner:
            del os.environ[OWNER_ENV]
