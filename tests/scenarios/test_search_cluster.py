"""Two Ray nodes that share nothing by accident, results on `s3://`: what outgrowing one machine
looks like, on one machine.

`ray.cluster_utils.Cluster` starts a head and a worker node in the test process; each node's
processes inherit the environment they are started with, so each gets its own dataset cache
(`DETR_SEARCH_CACHE`) and its own Ray temp folder (its session folder, hence its trials'
working folders). `search/run.py --address` joins them as a real subprocess with a third cache
of its own, and stores results on `s3://` served by moto's S3 server on 127.0.0.1 (endpoint
from `AWS_ENDPOINT_URL`, as the AWS tools read it). Then everything is read back from the
bucket with boto3: the search finished, its trials ran on both nodes, each node generated the
synthetic dataset in its own cache (the very same files), and every output of the search,
`--final-seeds` and `--resume` included, is on the URI; a local copy of the report goes where
`--report-dir` says. Nothing is written to a local results folder.

Midway the worker node is lost (`Cluster.remove_node`) once its trial has a checkpoint on S3:
that trial fails, is retried (`max_failures: 1`) on the head from its last checkpoint, read
back from S3, and completes; the search goes on.

The test process never connects to the cluster itself (no `ray.init` here); node and driver
processes carry the test's marker variable, so none may outlive `Cluster.shutdown()`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from s3_server import s3_server
from search_helpers import (
    CLI_TIMEOUT_S,
    MARKER_ENV,
    REPO_ROOT,
    RUN_SCRIPT,
    output_tail,
    ray_scope,
    run_cli,
    session_cache,
    start_cli,
    write_space,
)

from search.cluster.orphans import record_path
from search.running.cli import experiment_path

pytestmark = pytest.mark.slow

NAME = "cluster"
NUM_SAMPLES = 2
STEPS = 24  # 32 images / batch 8 x 6 epochs: time to lose a node mid-trial
LOGGING_STEPS = 2


def _dataset_folders(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "synthetic").glob("shapes-*") if p.is_dir())


def _working_dirs(temp_dir: Path) -> set[str]:
    """Trial folder names of the trials that ran in this node's Ray temp folder."""
    return {p.name for p in temp_dir.glob(f"session_*/artifacts/*/{NAME}/working_dirs/*")}


def _checkpoint_step(s3: Any, key: str) -> int:
    """The step a checkpoint_meta.json on S3 names; 0 if Tune deleted it meanwhile
    (`num_to_keep=1`)."""
    try:
        return int(json.loads(s3.read(key)).get("step", 0))
    except Exception:  # gone between the listing and the read
        return 0


def _lose_the_worker_after_a_checkpoint(cluster: Any, worker: Any, worker_temp: Path,
                                        head_temp: Path, s3: Any,
                                        proc: subprocess.Popen[bytes],
                                        log: Path) -> tuple[str, str]:
    """Remove the worker node once a trial running there has uploaded a checkpoint past its
    first evaluation and its trial.log to S3; (that trial, its trial.log as the worker
    uploaded it)."""
    deadline = time.monotonic() + CLI_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, "search ended first:\n" + output_tail(log.read_text())
        for trial in sorted(_working_dirs(worker_temp)):
            keys = s3.keys(f"results/{NAME}/{trial}/")
            # a checkpoint past the first evaluation: the driver has taken in the result of the
            # first one (a report waits for the previous one to be consumed), so Tune restores
            # the trial from a checkpoint it knows of instead of restarting it from step 0
            steps = [_checkpoint_step(s3, k) for k in keys
                     if k.endswith("/checkpoint_meta.json")]
            if steps and max(steps) > LOGGING_STEPS and \
                    f"results/{NAME}/{trial}/trial.log" in keys:
                trial_log = s3.read(f"results/{NAME}/{trial}/trial.log").decode()
                if "data: synthetic dataset" in trial_log:
                    assert trial not in _working_dirs(head_temp)  # on the worker alone
                    cluster.remove_node(worker)
                    return trial, trial_log
        time.sleep(0.2)
    raise AssertionError("no trial on the worker checkpointed:\n" + output_tail(log.read_text()))


def test_two_nodes_with_their_own_disks_results_on_s3_and_a_lost_node(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.cluster_utils import Cluster

    space = write_space(
        tmp_path / "space.yaml", NAME,
        {"training_args.learning_rate": {"loguniform": [1.0e-4, 3.0e-3]}},
        num_samples=NUM_SAMPLES, max_concurrent=2, epochs=STEPS // 4,
        logging_steps=LOGGING_STEPS, grace_period=STEPS, max_t=STEPS, max_failures=1)
    caches = {role: tmp_path / f"{role}-cache" for role in ("driver", "head", "worker")}
    report_copy = tmp_path / "report"
    log = tmp_path / "search.log"
    with s3_server() as s3, ray_scope(session_cache(tmp_path_factory)) as scope:
        storage = s3.uri("results")
        for key, value in {**s3.env, MARKER_ENV: scope.marker,
                           "RAY_TMPDIR": str(scope.tmpdir)}.items():
            monkeypatch.setenv(key, value)  # node processes inherit the test's environment
        temp_dirs = {role: scope.tmpdir / role[0] for role in ("head", "worker")}  # short
        (scope.tmpdir / "ray").mkdir()  # RAY_TMPDIR/ray: where Ray notes the cluster address
        node_args = {"num_cpus": 1, "include_dashboard": False}
        monkeypatch.setenv("DETR_SEARCH_CACHE", str(caches["head"]))
        cluster = Cluster(initialize_head=True,
                          head_node_args={**node_args, "temp_dir": str(temp_dirs["head"])})
        try:
            monkeypatch.setenv("DETR_SEARCH_CACHE", str(caches["worker"]))
            worker = cluster.add_node(**node_args, temp_dir=str(temp_dirs["worker"]))
            nodes = {cluster.head_node.node_id: "head", worker.node_id: "worker"}
            assert len(nodes) == 2
            env = {**scope.env, **s3.env, "DETR_SEARCH_CACHE": str(caches["driver"])}
            args = ["--space", space, "--storage", storage, "--no-dashboard",
                    "--address", cluster.address, "--cpus-per-trial", "1"]
            proc = start_cli(RUN_SCRIPT, [*args, "--final-seeds", "1",
                                          "--report-dir", report_copy], env, log)
            try:
                lost, worker_log = _lose_the_worker_after_a_checkpoint(
                    cluster, worker, temp_dirs["worker"], temp_dirs["head"], s3, proc, log)
                returncode = proc.wait(timeout=CLI_TIMEOUT_S)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            output = log.read_text(errors="replace")
            assert returncode == 0, output_tail(output)
            assert "Started a local Ray instance" not in output
            ran_on = {role: _working_dirs(temp) for role, temp in temp_dirs.items()}
            first_report = s3.read(f"results/{NAME}/REPORT.md")
            # the same command with --resume and no --name: the newest experiment, from S3
            resumed = run_cli(RUN_SCRIPT, [*args, "--resume"], env)
            assert resumed.returncode == 0, output_tail(resumed)
            # the driver only ever cleans up a cluster it started: the joined one still runs,
            # and no owner record or watchdog was made for it
            assert sum(p.name() == "raylet" for p in scope.processes()) >= 1
            assert not record_path(experiment_path(storage, NAME)).exists()
        finally:
            cluster.shutdown()
        monkeypatch.delenv(MARKER_ENV)
        scope.assert_no_leftovers()

        assert f"resuming {NAME}, the newest in {storage}" in resumed.stdout
        assert f"report:      {storage}/{NAME}/REPORT.md" in output
        prefix = f"results/{NAME}/"
        keys = [k.removeprefix(prefix) for k in s3.keys(prefix)]
        files = {k: s3.read(prefix + k) for k in keys if "/" not in k or
                 k.startswith(("best_model/", "plots/", "finalists/"))}
        trial_keys = sorted({k.split("/")[0] for k in keys if k.startswith("train_detr_")})
        trials = {t: [json.loads(line) for line in
                      s3.read(f"{prefix}{t}/result.json").decode().splitlines()]
                  for t in trial_keys}
        logs = {t: s3.read(f"{prefix}{t}/trial.log").decode() for t in trial_keys}
        study = s3.read(prefix + "optuna_study.log")

    # the search finished; one trial ran on each node, and the lost node's trial went on on
    # the head from its last checkpoint (it did not start again from step 0)
    assert len(trials) == NUM_SAMPLES and lost in trials
    rows = list(csv.DictReader(io.StringIO(files["trials.csv"].decode())))
    assert {r["trial_id"]: r["status"] for r in rows} == {
        r[0]["trial_id"]: "completed" for r in trials.values()}, rows
    where = {t: [nodes[r["node_id"]] for r in results] for t, results in trials.items()}
    (kept,) = set(trials) - {lost}
    assert set(where[kept]) == {"head"}
    lost_steps = [r["step"] for r in trials[lost]]
    switch = where[lost].index("head")
    assert set(where[lost][:switch]) == {"worker"} and set(where[lost][switch:]) == {"head"}
    assert lost_steps[switch] > LOGGING_STEPS  # resumed, not restarted
    assert lost_steps[-1] == STEPS
    assert f"trial {trials[lost][0]['trial_id']} failed" in output
    assert ran_on["worker"] == {lost} and ran_on["head"] == set(trials)

    # each node made the dataset in its own cache, from the parameters: the very same files
    copies = {role: _dataset_folders(cache) for role, cache in caches.items()}
    assert all(len(found) == 1 for found in copies.values()), copies
    reference = copies["driver"][0]
    for role in ("head", "worker"):
        assert copies[role][0].name == reference.name
        assert (copies[role][0] / "train.json").read_bytes() == \
            (reference / "train.json").read_bytes()
    # as the trials' logs say, uploaded from their nodes (the lost trial's first, from the
    # worker, was replaced by its retry's, from the head)
    assert f"data: synthetic dataset {copies['worker'][0]} on node " in worker_log
    for trial, log_text in logs.items():
        assert f"data: synthetic dataset {copies['head'][0]} on node " in log_text, trial

    # every output is on the URI, built by reading the experiment back from it
    for name in ("search_spec.yaml", "prepared_data.json", "best_config.yaml", "trials.csv",
                 "REPORT.md", "test_metrics.json", "best_model/config.json",
                 "best_model/model.safetensors", "best_model/export_source.json",
                 "plots/metric_curves.png"):
        assert name in files, (name, sorted(files))
    record = json.loads(files["prepared_data.json"])
    assert record["kind"] == "synthetic" and set(record["data"]) == {"synthetic"}
    best = yaml.safe_load(files["best_config.yaml"])
    assert best["data"] == {"synthetic": record["data"]["synthetic"]}  # parameters, no paths
    assert best["model"]["checkpoint"] == "builtin:tiny-shapes"  # the name, never a path
    for name in ("best_config.yaml", "search_spec.yaml"):
        text = files[name].decode()
        assert not any(str(cache) in text for cache in caches.values()), name
    # --final-seeds 1: one fresh run of the winner's configuration, a trial of the finalists
    # stage's own Tune experiment on the same storage, evaluated once on the test split
    run_metrics = [k for k in files
                   if k.startswith("finalists/") and k.count("/") == 2
                   and k.endswith("/test_metrics.json")]
    assert len(run_metrics) == 1, sorted(files)
    run = run_metrics[0].split("/")[1]
    assert f"finalists/{run}/trial.log" in files and "finalists.json" in files
    assert any(k.startswith(f"finalists/{run}/checkpoint_") for k in keys)
    source = json.loads(files["best_model/export_source.json"])
    assert source["checkpoint"].startswith(f"finalists/{run}/checkpoint_")
    report = files["REPORT.md"].decode()
    assert "## Finalists" in report and "## Test metrics of the winner" in report
    assert "## Finalists" in first_report.decode()  # and kept by the resumed export
    assert f"python search/export.py {storage}/{NAME}" in report
    for line in report.splitlines():
        if line.startswith("!["):
            assert line[line.index("](") + 2:-1] in files  # its plots lie beside it
    # the Optuna study, from its journal on S3: one finished trial per Tune trial
    journal = tmp_path / "optuna_study.log"
    journal.write_bytes(study)
    loaded = optuna.load_study(study_name=NAME,
                               storage=JournalStorage(JournalFileBackend(str(journal))))
    assert len(loaded.trials) == NUM_SAMPLES
    assert all(t.state.is_finished() for t in loaded.trials)
    # the local copy of the report, with its plots; no local results folder anywhere
    assert (report_copy / "REPORT.md").is_file()
    assert sorted(p.name for p in (report_copy / "plots").iterdir()) == \
        sorted(k.removeprefix("plots/") for k in files if k.startswith("plots/"))
    assert not (REPO_ROOT / "results" / NAME).exists()
    assert os.environ.get(MARKER_ENV) is None
