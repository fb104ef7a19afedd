"""search.cluster.local_cluster.check_trials_fit against made-up clusters (`ray.nodes` patched):
a trial, or the workers of a data-parallel one, that the cluster cannot hold is refused in one
line naming the key (a warning on a joined cluster, whose autoscaler may add nodes)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from detr_core.config.run_config import validated
from detr_core.files.errors import UserInputError
from search.cluster.local_cluster import check_trials_fit
from search.space.spec import ResourceSpec


def _spec(**resources: Any) -> SimpleNamespace:
    return SimpleNamespace(source="space.yaml", resources=validated(ResourceSpec, resources,
                                                                    "space.yaml"))


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The alive (and dead) nodes `ray.nodes()` returns; tests fill it."""
    import ray

    nodes: list[dict[str, Any]] = []
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    return nodes


def _node(cpus: float, gpus: float = 0.0, alive: bool = True) -> dict[str, Any]:
    return {"Alive": alive, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


def _refusal(spec: SimpleNamespace) -> str:
    with pytest.raises(UserInputError) as err:
        check_trials_fit(spec, joined=False)
    return str(err.value)


def test_one_process_trials_are_checked_as_before(cluster: list) -> None:
    cluster += [_node(4), _node(64, alive=False)]
    check_trials_fit(_spec(cpus_per_trial=4), joined=False)
    assert _refusal(_spec(cpus_per_trial=8)) == (
        "space.yaml: experiment.resources.cpus_per_trial: a trial asks for 8 CPU, but no node "
        "of the Ray cluster has more than 4 (lower it, here or with --cpus-per-trial, or join a "
        "cluster that has them with --address)")
    assert _refusal(_spec(gpus_per_trial=1)).startswith(
        "space.yaml: experiment.resources.gpus_per_trial: a trial asks for 1 GPU, but no node "
        "of the Ray cluster has more than 0 ")


def test_workers_spread_over_the_nodes(cluster: list) -> None:
    cluster += [_node(2), _node(2), _node(1)]
    check_trials_fit(_spec(workers_per_trial=5), joined=False)  # 2 + 2 + 1 workers of 1 CPU
    check_trials_fit(_spec(workers_per_trial=2, cpus_per_worker=2), joined=False)
    assert _refusal(_spec(workers_per_trial=4, cpus_per_worker=2)) == (
        "space.yaml: experiment.resources.workers_per_trial: a trial's 4 workers x 2 CPU need "
        "8 CPUs, but the Ray cluster's nodes hold only 2 such workers (lower it in the space "
        "file, or join a cluster that has them with --address)")
    assert _refusal(_spec(workers_per_trial=2, cpus_per_worker=3)) == (
        "space.yaml: experiment.resources.cpus_per_worker: a trial's worker asks for 3 CPU, "
        "but no node of the Ray cluster has more than 2 (lower it in the space file, or join a "
        "cluster that has them with --address)")


def test_a_worker_s_cpus_and_gpus_are_on_one_node(cluster: list) -> None:
    cluster += [_node(8, gpus=2), _node(1, gpus=2), _node(16)]
    check_trials_fit(_spec(workers_per_trial=3, gpus_per_worker=1), joined=False)
    # 4 GPUs and 9 CPUs on the GPU nodes, 25 CPUs in all, but a worker's 2 CPUs and its GPU
    # must be on one node: the second GPU node has 1 CPU, the CPU node no GPU
    assert "4 workers x 2 CPU, 1 GPU need 8 CPUs + 4 GPUs, but the Ray cluster's nodes hold " \
           "only 2 such workers" in _refusal(_spec(workers_per_trial=4, cpus_per_worker=2,
                                                   gpus_per_worker=1))
    assert _refusal(_spec(workers_per_trial=2, cpus_per_worker=32)).startswith(
        "space.yaml: experiment.resources.cpus_per_worker: a trial's worker asks for 32 CPU, "
        "but no node of the Ray cluster has more than 16 ")
    check_trials_fit(_spec(workers_per_trial=4, cpus_per_worker=4), joined=False)  # CPU only


def test_a_joined_cluster_gets_a_warning(cluster: list,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    cluster += [_node(2)]
    check_trials_fit(_spec(workers_per_trial=4), joined=True)
    assert capsys.readouterr().out == (
        "warning: a trial's 4 workers x 1 CPU need 4 CPUs, but the Ray cluster's nodes hold "
        "only 2 such workers; the search waits for the cluster to add one\n")
