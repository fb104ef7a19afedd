"""A search on a remote cluster: `ray job submit` to a running head, and the KubeRay `RayJob`
of `deploy/` that does the same on Kubernetes.

The submit test starts a head with `ray start --head --block` (its own temp folder and free
ports; the test stops only the processes it started, by pid, never `ray stop`), submits
`search/run.py` with `--working-dir` (the repository as Ray uploads it) and the S3 endpoint and
credentials as the job's runtime environment, as one does for a cluster whose pods share no
disk, waits for the job, and reads the results back from the bucket moto serves.

The manifest test checks what can be checked without Kubernetes (the manifest is labelled
untested on a live cluster): it parses, its Ray version is the installed one (the Dockerfile's
base image too), its entrypoint is valid `search/run.py` flags on a shipped space file, and
every pod gets the storage credentials.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from s3_server import s3_server, wait_until_answers
from search_helpers import (
    CLI_TIMEOUT_S,
    REPO_ROOT,
    TERMINAL_STATUS_PREFIXES,
    free_port,
    output_tail,
    ray_scope,
    session_cache,
    write_space,
)

NAME = "submitted"
NUM_SAMPLES = 2
DEPLOY = REPO_ROOT / "deploy"
IMAGE_HOME = "/home/ray/detr-search/"  # where deploy/Dockerfile puts the repository


@pytest.mark.slow
def test_a_search_submitted_as_a_ray_job_writes_its_report_to_its_storage(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    ray = str(Path(sys.executable).with_name("ray"))
    space = write_space(tmp_path / "space.yaml", NAME,
                        {"training_args.learning_rate": {"loguniform": [1.0e-4, 3.0e-3]}},
                        num_samples=NUM_SAMPLES, max_concurrent=2, epochs=1, logging_steps=2,
                        grace_period=4, max_t=4)
    with s3_server() as s3, ray_scope(session_cache(tmp_path_factory)) as scope:
        (scope.tmpdir / "ray").mkdir()  # RAY_TMPDIR/ray: where Ray notes the cluster address
        # token authentication on, as on a real cluster: head, CLI and job share the token
        env = {**scope.env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        head_log = tmp_path / "head.log"
        with open(head_log, "wb") as log:
            head = subprocess.Popen(
                [ray, "start", "--head", "--block", "--port", "0", "--num-cpus", "2",
                 "--dashboard-host", "127.0.0.1", "--dashboard-port", str(port),
                 "--ray-client-server-port", str(free_port()),
                 "--dashboard-agent-listen-port", str(free_port()),
                 "--temp-dir", str(scope.tmpdir / "h"), "--disable-usage-stats"],
                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:  # the job server (`ray start` forks it and returns before it listens)
                wait_until_answers(f"{url}/api/version", head, CLI_TIMEOUT_S)
            except RuntimeError as exc:
                raise AssertionError(f"{exc}:\n{output_tail(head_log.read_text())}") from None
            runtime_env = {"env_vars": {**s3.env, "HF_HUB_OFFLINE": "1",
                                        "TRANSFORMERS_OFFLINE": "1",
                                        "DETR_SEARCH_CACHE": scope.env["DETR_SEARCH_CACHE"]}}
            submit = [ray, "job", "submit", "--address", url, "--working-dir", str(REPO_ROOT),
                      "--runtime-env-json", json.dumps(runtime_env), "--",
                      sys.executable, "search/run.py", "--space", str(space),
                      "--storage", s3.uri("results")]
            deadline = time.monotonic() + CLI_TIMEOUT_S
            while True:  # until the head's agent has registered: refused before, no job made
                job = subprocess.run(submit, cwd=tmp_path, env=env, capture_output=True,
                                     text=True, timeout=CLI_TIMEOUT_S, check=False)
                if "No available agent" not in job.stdout + job.stderr \
                        or time.monotonic() > deadline:
                    break
                time.sleep(1)
        finally:
            head.terminate()
            head.wait(timeout=60)
            killed = scope.kill_all()
        output = job.stdout + job.stderr
        assert job.returncode == 0, output_tail(output)
        assert "succeeded" in output, output_tail(output)
        # the driver ran inside the job and joined the head, found through RAY_ADDRESS
        assert "existing Ray cluster at" in output, output_tail(output)
        assert "(RAY_ADDRESS)" in output, output_tail(output)
        assert f"done: {s3.uri('results')}/{NAME}/REPORT.md" in output, output_tail(output)
        assert not (REPO_ROOT / "results" / NAME).exists()  # nothing written locally
        assert not any("search/run.py" in cmd for cmd in killed), killed  # the driver had ended
        keys = set(s3.keys(f"results/{NAME}/"))
        for name in ("REPORT.md", "trials.csv", "best_config.yaml", "search_spec.yaml"):
            assert f"results/{NAME}/{name}" in keys, sorted(keys)
        rows = list(csv.DictReader(io.StringIO(s3.read(f"results/{NAME}/trials.csv").decode())))
        assert len(rows) == NUM_SAMPLES
        assert all(r["status"].startswith(TERMINAL_STATUS_PREFIXES) for r in rows), rows
        assert f"# Search report: {NAME}" in s3.read(f"results/{NAME}/REPORT.md").decode()


def test_the_kuberay_manifest_runs_a_shipped_space_on_the_tested_ray() -> None:
    import ray

    from search.running.cli import parse_args

    manifest = yaml.safe_load((DEPLOY / "rayjob.yaml").read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayJob")
    cluster = manifest["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    base = next(ln.split()[1] for ln in dockerfile.splitlines() if ln.startswith("FROM "))
    assert base.startswith(f"rayproject/ray:{ray.__version__}-"), base
    # the entrypoint: valid flags, a space file the image holds, storage every pod reaches
    argv = shlex.split(manifest["spec"]["entrypoint"])
    assert argv[:2] == ["python", f"{IMAGE_HOME}search/run.py"], argv
    args = parse_args([a.replace(IMAGE_HOME, f"{REPO_ROOT}/") for a in argv[2:]])
    assert Path(args.space).is_file() and Path(args.space).parent.name == "search_spaces"
    assert args.storage.startswith("s3://"), args.storage
    # every pod runs the image and gets the storage credentials (trials upload from theirs)
    pods = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    containers = [c for pod in pods for c in pod["template"]["spec"]["containers"]]
    assert len({c["image"] for c in containers}) == 1
    assert all(c.get("envFrom") for c in containers), containers
    for copied in ("detr_core", "search", "search_spaces", "pyproject.toml"):
        assert f" {copied}" in dockerfile and (REPO_ROOT / copied).exists(), copied
