"""Two Ray nodes on one machine (`ray.cluster_utils.Cluster`, started in the test process) and
`search/run.py --address` joining them as a real subprocess: the trials run on both nodes.

The cluster gets a private short temp folder (Ray's Unix sockets live there) and no dashboard;
its processes, and the driver's, carry the test's marker variable, so the test can check that
none of them outlives `Cluster.shutdown()`. The test process never connects to the cluster
itself (no `ray.init` here), so nothing in it needs a `ray.shutdown()`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from search_helpers import (
    MARKER_ENV,
    RUN_SCRIPT,
    TERMINAL_STATUS_PREFIXES,
    output_tail,
    ray_scope,
    read_results,
    read_trials_csv,
    run_cli,
    session_cache,
    trial_dirs,
    write_space,
)

from search.orphans import record_path

pytestmark = pytest.mark.slow


def test_trials_spread_over_two_nodes(tmp_path: Path,
                                      tmp_path_factory: pytest.TempPathFactory,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.cluster_utils import Cluster

    name = "cluster"
    num_samples = 2
    space = write_space(
        tmp_path / "space.yaml", name,
        {"training_args.learning_rate": {"loguniform": [1.0e-4, 3.0e-3]}},
        num_samples=num_samples, max_concurrent=2)
    with ray_scope(session_cache(tmp_path_factory)) as scope:
        # Node processes inherit the test process's environment: mark them as this test's.
        monkeypatch.setenv(MARKER_ENV, scope.marker)
        monkeypatch.setenv("RAY_TMPDIR", str(scope.tmpdir))
        temp_dir = scope.tmpdir / "ray"  # where Ray itself would put it under RAY_TMPDIR
        temp_dir.mkdir()
        node_args = {"num_cpus": 1, "temp_dir": str(temp_dir), "include_dashboard": False}
        cluster = Cluster(initialize_head=True, head_node_args=node_args)
        try:
            worker = cluster.add_node(num_cpus=1, temp_dir=str(temp_dir))
            node_ids = {cluster.head_node.node_id, worker.node_id}
            assert len(node_ids) == 2
            proc = run_cli(RUN_SCRIPT, [
                "--space", space, "--storage", tmp_path / "results", "--no-dashboard",
                "--address", cluster.address, "--cpus-per-trial", "1",
            ], scope.env)
            assert proc.returncode == 0, output_tail(proc)
            assert "Started a local Ray instance" not in proc.stdout + proc.stderr
            # the driver only ever cleans up a cluster it started: the joined one still runs,
            # and no owner record or watchdog was made for it
            assert sum(p.name() == "raylet" for p in scope.processes()) == 2
            assert not record_path(str(tmp_path / "results" / name)).exists()
        finally:
            cluster.shutdown()
        monkeypatch.delenv(MARKER_ENV)
        assert os.environ.get(MARKER_ENV) is None
        scope.assert_no_leftovers()

    exp = tmp_path / "results" / name
    rows = read_trials_csv(exp)
    assert len(rows) == num_samples
    assert all(r["status"].startswith(TERMINAL_STATUS_PREFIXES) for r in rows), rows
    seen = set()
    for trial in trial_dirs(exp):
        results = read_results(trial)
        assert results, trial.name
        trial_nodes = {r["node_id"] for r in results}
        assert len(trial_nodes) == 1, trial_nodes  # a trial stays on its node
        seen |= trial_nodes
    # one CPU per node and two one-CPU trials at a time: one trial on each node
    assert seen == node_ids
