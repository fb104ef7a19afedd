"""A search on a remote cluster: `ray job submit` to a running head, and the KubeRay `RayJob`
of `deploy/` that does the same on Kubernetes.

The submit test starts a head with `ray start --head --block` (its own temp folder and free
ports; the test stops only the processes it started, by pid, never `ray stop`), submits
`search/run.py` with `--working-dir` (the repository as Ray uploads it) and the S3 endpoint and
credentials as the job's runtime environment, as one does for a cluster whose pods share no
disk; kills the job's driver mid-search, submits it again with `--resume`, waits for that job,
and reads the results back from the bucket moto serves.

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
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
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

from search.trial.trainable import TRIAL_GATE_ENV

NAME = "submitted"
NUM_SAMPLES = 2
DEPLOY = REPO_ROOT / "deploy"
IMAGE_HOME = "/home/ray/detr-search/"  # where deploy/Dockerfile puts the repository


def _submit(ray: str, url: str, runtime_env: dict, command: list[str], cwd: Path,
            env: dict[str, str], wait: bool = True) -> subprocess.CompletedProcess[str]:
    """`ray job submit` of `command`; retried while the head's agent has not registered
    (refused before it does, no job made)."""
    submit = [ray, "job", "submit", "--address", url, "--working-dir", str(REPO_ROOT),
              "--runtime-env-json", json.dumps(runtime_env), *([] if wait else ["--no-wait"]),
              "--", *command]
    deadline = time.monotonic() + CLI_TIMEOUT_S
    while True:
        job = subprocess.run(submit, cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=CLI_TIMEOUT_S, check=False)
        if "No available agent" not in job.stdout + job.stderr or time.monotonic() > deadline:
            return job
        time.sleep(1)


def _kill_the_driver_once_resumable(s3, scope, gate: Path) -> list[str]:
    """SIGKILL the submitted driver once the experiment state and a trial's checkpoint are on
    the bucket (the trials wait at the gate after reporting); then open the gate. Returns
    the trial folders that had a checkpoint."""
    deadline = time.monotonic() + CLI_TIMEOUT_S
    while time.monotonic() < deadline:
        keys = s3.keys(f"results/{NAME}/")
        checkpointed = sorted({k.split("/")[2] for k in keys if "/checkpoint_" in k})
        if checkpointed and any("/experiment_state-" in k for k in keys):
            drivers = [p for p in scope.processes() if _is_driver(p)]
            assert len(drivers) == 1, drivers
            drivers[0].send_signal(signal.SIGKILL)
            drivers[0].wait(timeout=60)
            (gate / "hold").unlink()
            return checkpointed
        time.sleep(0.5)
    raise AssertionError(f"nothing checkpointed on the bucket: {s3.keys()}")


def _is_driver(proc) -> bool:
    """The job's `python search/run.py` (not the `sh -c` Ray's job manager wraps it in)."""
    try:
        return proc.name().startswith("python") and "search/run.py" in " ".join(proc.cmdline())
    except Exception:  # psutil: gone or not ours
        return False


@pytest.mark.slow
def test_a_search_submitted_as_a_ray_job_survives_its_driver_killed_and_resumes(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Submitted with `--no-wait`; its driver SIGKILLed on the head once the search can be
    resumed from the bucket (trials held at the gate after their first report); the same
    submission plus `--resume` finishes it: REPORT.md and trials.csv on the bucket, every
    trial once in trials.csv and in the Optuna study."""
    ray = str(Path(sys.executable).with_name("ray"))
    space = write_space(tmp_path / "space.yaml", NAME,
                        {"training_args.learning_rate": {"loguniform": [1.0e-4, 3.0e-3]}},
                        num_samples=NUM_SAMPLES, max_concurrent=2, epochs=1, logging_steps=2,
                        grace_period=4, max_t=4)
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "hold").touch()
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
                                        "TRANSFORMERS_OFFLINE": "1", TRIAL_GATE_ENV: str(gate),
                                        "DETR_SEARCH_CACHE": scope.env["DETR_SEARCH_CACHE"]}}
            command = [sys.executable, "search/run.py", "--space", str(space),
                       "--storage", s3.uri("results")]
            first = _submit(ray, url, runtime_env, command, tmp_path, env, wait=False)
            assert first.returncode == 0, output_tail(first.stdout + first.stderr)
            checkpointed = _kill_the_driver_once_resumable(s3, scope, gate)
            job = _submit(ray, url, runtime_env, [*command, "--resume"], tmp_path, env)
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
        assert f"resuming {NAME}" in output, output_tail(output)
        assert f"done: {s3.uri('results')}/{NAME}/REPORT.md" in output, output_tail(output)
        assert not (REPO_ROOT / "results" / NAME).exists()  # nothing written locally
        assert not any("search/run.py" in cmd for cmd in killed), killed  # the driver had ended
        keys = set(s3.keys(f"results/{NAME}/"))
        for name in ("REPORT.md", "trials.csv", "best_config.yaml", "search_spec.yaml"):
            assert f"results/{NAME}/{name}" in keys, sorted(keys)
        rows = list(csv.DictReader(io.StringIO(s3.read(f"results/{NAME}/trials.csv").decode())))
        assert len(rows) == NUM_SAMPLES
        assert all(r["status"].startswith(TERMINAL_STATUS_PREFIXES) for r in rows), rows
        assert all(any(r["trial_id"] in folder for r in rows) for folder in checkpointed)
        assert f"# Search report: {NAME}" in s3.read(f"results/{NAME}/REPORT.md").decode()
        journal = tmp_path / "optuna_study.log"
        journal.write_bytes(s3.read(f"results/{NAME}/optuna_study.log"))
        study = optuna.load_study(study_name=NAME, storage=JournalStorage(
            JournalFileBackend(str(journal))))
        assert len(study.trials) == NUM_SAMPLES
        assert sorted(t.params["training_args.learning_rate"] for t in study.trials) == sorted(
            float(r["training_args.learning_rate"]) for r in rows)


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
