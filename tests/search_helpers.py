"""Helpers for the end-to-end search tests: small space files, the CLI as a real subprocess,
the files a search leaves behind, and the Ray processes a test must not leave running.

Every CLI run gets a `RayScope`: a short private `RAY_TMPDIR` (Ray's session folder and its
Unix sockets go there, not in the shared /tmp/ray) and a unique marker environment variable.
Ray's processes inherit the driver's environment (raylet, GCS, dashboard, workers), so after a
test the marker finds exactly the processes that test started, and nobody else's: a driver
that exits normally must leave none; after a SIGKILLed driver they are killed by pid.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_SCRIPT = "search/run.py"
EXPORT_SCRIPT = "search/export.py"
MARKER_ENV = "DETR_SEARCH_TEST_SCOPE"
METRIC = "eval_loss_bbox"
CLI_TIMEOUT_S = 420

# The same tiny synthetic dataset in every test: generated once per session in the cache.
SMALL_DATA = {"num_train": 32, "num_val": 8, "num_test": 8, "image_size": 64}
TERMINAL_STATUS_PREFIXES = ("completed", "stopped by ASHA at step ")


# ---------------------------------------------------------------------------------------------
# Space files


def write_space(
    path: Path,
    name: str,
    space: dict[str, Any],
    *,
    num_samples: int,
    max_concurrent: int = 1,
    grace_period: int = 2,
    reduction_factor: int = 2,
    max_t: int | None = None,
    epochs: int = 2,
    logging_steps: int = 2,
    max_failures: int = 0,
    seed: int = 0,
    extra_overrides: dict[str, Any] | None = None,
) -> Path:
    """A small search-space file: 32 training images (4 steps per epoch at batch 8)."""
    scheduler: dict[str, Any] = {"grace_period": grace_period,
                                 "reduction_factor": reduction_factor}
    if max_t is not None:
        scheduler["max_t"] = max_t
    doc = {
        "experiment": {
            "name": name,
            "num_samples": num_samples,
            "max_concurrent": max_concurrent,
            "scheduler": scheduler,
            "searcher": {"seed": seed, "n_startup_trials": num_samples},
            "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
            "max_failures": max_failures,
        },
        "base_overrides": {
            "data.synthetic": dict(SMALL_DATA),
            "model.image_size": 64,
            "training_args.num_train_epochs": epochs,
            "training_args.logging_steps": logging_steps,
            **(extra_overrides or {}),
        },
        "space": space,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def session_cache(tmp_path_factory: Any) -> Path:
    """The session's dataset cache: conftest's `DETR_SEARCH_CACHE` if set, else our own."""
    existing = os.environ.get("DETR_SEARCH_CACHE")
    if existing:
        return Path(existing)
    cache = tmp_path_factory.getbasetemp() / "detr-search-cache"
    cache.mkdir(exist_ok=True)
    return cache


# ---------------------------------------------------------------------------------------------
# Ray processes of one test


def _matches(proc: psutil.Process, marker: str, tmpdir: str) -> bool:
    try:
        if proc.environ().get(MARKER_ENV) == marker:
            return True
        return any(tmpdir in part for part in proc.cmdline())
    except (psutil.Error, OSError):
        return False


@dataclass
class RayScope:
    """Environment and process bookkeeping of the Ray instances one test starts."""

    marker: str
    tmpdir: Path
    env: dict[str, str] = field(default_factory=dict)

    def processes(self) -> list[psutil.Process]:
        """Live processes started under this scope (the test process itself excluded)."""
        me = os.getpid()
        found = [p for p in psutil.process_iter()
                 if p.pid != me and _matches(p, self.marker, str(self.tmpdir))]
        return [p for p in found if _alive(p)]

    def wait_gone(self, timeout: float) -> list[psutil.Process]:
        """Wait until no process of the scope is left; returns the ones still alive."""
        deadline = time.monotonic() + timeout
        left = self.processes()
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = self.processes()
        return left

    def kill_all(self) -> list[str]:
        """SIGKILL every process of the scope (by pid); returns their command lines."""
        killed = []
        for _ in range(3):  # a dying raylet may still fork a worker: sweep a few times
            procs = self.processes()
            if not procs:
                break
            for proc in procs:
                try:
                    killed.append(" ".join(proc.cmdline())[:200])
                    proc.send_signal(signal.SIGKILL)
                except (psutil.Error, OSError):
                    pass
            psutil.wait_procs(procs, timeout=10)
        return killed

    def assert_no_leftovers(self, timeout: float = 30.0) -> None:
        """Fail (after killing them) if processes of this scope outlive their driver."""
        left = self.wait_gone(timeout)
        if left:
            names = self.kill_all()
            raise AssertionError(f"Ray processes left behind after the driver exited: {names}")


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, OSError):
        return False


@contextmanager
def ray_scope(cache: Path, **extra_env: str) -> Iterator[RayScope]:
    """A `RayScope` for CLI subprocesses; its processes are killed and its folder removed."""
    # Short on purpose: Ray puts Unix sockets under RAY_TMPDIR (path limit ~107 bytes).
    tmpdir = Path(tempfile.mkdtemp(prefix="dsr", dir="/tmp"))
    marker = uuid.uuid4().hex
    env = dict(os.environ)
    env.update({
        MARKER_ENV: marker,
        "RAY_TMPDIR": str(tmpdir),
        "DETR_SEARCH_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        **extra_env,
    })
    scope = RayScope(marker=marker, tmpdir=tmpdir, env=env)
    try:
        yield scope
    finally:
        scope.kill_all()
        shutil.rmtree(tmpdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The CLIs


def run_cli(script: str, args: Sequence[str], env: dict[str, str],
            timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """`python <script> <args>` from the repository root, output captured."""
    return subprocess.run(
        [sys.executable, script, *map(str, args)], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def start_cli(script: str, args: Sequence[str], env: dict[str, str],
              log: Path) -> subprocess.Popen[bytes]:
    """Start `python <script> <args>` in the background, stdout and stderr into `log`."""
    handle = open(log, "wb")  # noqa: SIM115 - closed with the process by the caller's wait
    try:
        return subprocess.Popen([sys.executable, script, *map(str, args)], cwd=REPO_ROOT,
                                env=env, stdout=handle, stderr=subprocess.STDOUT)
    finally:
        handle.close()  # the child keeps its own descriptor


def output_tail(proc: subprocess.CompletedProcess[str] | str, chars: int = 4000) -> str:
    """The end of a run's output, for assertion messages."""
    if isinstance(proc, str):
        return proc[-chars:]
    return f"--- stdout ---\n{proc.stdout[-chars:]}\n--- stderr ---\n{proc.stderr[-chars:]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# What a search leaves behind


def trial_dirs(experiment_dir: Path) -> list[Path]:
    return sorted(p for p in experiment_dir.iterdir()
                  if p.is_dir() and (p / "params.json").is_file())


def read_results(trial_dir: Path) -> list[dict[str, Any]]:
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_trials_csv(experiment_dir: Path) -> list[dict[str, str]]:
    with open(experiment_dir / "trials.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def ray_trial_states(experiment_dir: Path) -> dict[str, dict[str, Any]]:
    """trial id -> {status, num_failures, ...} from the newest `experiment_state-*.json`.

    Newest by the driver start time in the name: after a resume, Tune syncs the old session's
    file into the folder again, with the same modification time as the new one.
    """
    files = sorted(experiment_dir.glob("experiment_state-*.json"), key=lambda p: p.name)
    if not files:
        return {}
    try:
        state = json.loads(files[-1].read_text())
    except ValueError:  # caught mid-write
        return {}
    found = {}
    for entry in state.get("trial_data", []):
        trial = json.loads(entry[0]) if isinstance(entry[0], str) else entry[0]
        meta = json.loads(entry[1]) if isinstance(entry[1], str) else entry[1]
        found[str(trial["trial_id"])] = {"status": trial.get("status"), **meta}
    return found


def load_study(experiment_dir: Path, name: str) -> Any:
    """The search's Optuna study, read from its journal file like a user would."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(experiment_dir / "optuna_study.log")))
    return optuna.load_study(study_name=name, storage=storage)


def optuna_trial_for(study: Any, params: dict[str, Any]) -> Any:
    """The one Optuna trial whose sampled params equal a Tune trial's params.json."""
    matches = [t for t in study.trials if t.params == params]
    assert len(matches) == 1, (params, [t.params for t in study.trials])
    return matches[0]


def tensorboard_scalars(trial_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(global step, value) of one scalar tag over every event file of a trial folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points: list[tuple[int, float]] = []
    for events in sorted(trial_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            points += [(e.step, e.value) for e in acc.Scalars(tag)]
    return points
