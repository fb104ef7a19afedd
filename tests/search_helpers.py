"""Helpers for the end-to-end search tests: small space files, the CLI as a real subprocess
(or its `main` in this process, where the process proves nothing more), the files a search
leaves behind, and the Ray processes a test must not leave running.

Every CLI run gets a `RayScope`: a short private `RAY_TMPDIR` (Ray's session folder and its
Unix sockets go there, not in the shared /tmp/ray) and a unique marker environment variable.
Ray's processes inherit the driver's environment (raylet, GCS, dashboard, workers), so after a
test the marker finds exactly the processes that test started, and nobody else's: a driver
that exits normally must leave none; after a SIGKILLed driver they are killed by pid.
"""

from __future__ import annotations

import csv
import io
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
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
    metric: str | None = None,
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
            **({"metric": metric} if metric else {}),
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


def run_main_in_process(main: Callable[[list[str]], int | None], args: Sequence[str],
                        env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`main(args)` in this process, in `env`, output captured: what `run_cli` returns.

    For a CLI whose own process proves nothing more (no signal, no process left to find): the
    interpreter and the imports (~10 s a run on this machine) are not paid again, while Ray,
    Tune and the trials run exactly as from the command line. The environment (the scope's
    marker, `RAY_TMPDIR`, the cache) and the working folder are this call's alone: both are
    put back afterwards, so is whatever the CLI set in `os.environ`.
    """
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(REPO_ROOT)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
    return subprocess.CompletedProcess([getattr(main, "__module__", "main"), *map(str, args)],
                                       code or 0, out.getvalue(), err.getvalue())


def start_cli(script: str, args: Sequence[str], env: dict[str, str],
              log: Path, new_session: bool = False) -> subprocess.Popen[bytes]:
    """Start `python <script> <args>` in the background, stdout and stderr into `log`.

    `new_session`: the process leads its own process group, so `os.killpg(proc.pid, SIGINT)`
    is what a Ctrl-C in its terminal sends (to the driver and every child it did not detach).
    """
    handle = open(log, "wb")  # noqa: SIM115 - closed with the process by the caller's wait
    try:
        return subprocess.Popen([sys.executable, script, *map(str, args)], cwd=REPO_ROOT,
                                env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=new_session)
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
    """Every whole result line of a trial; a last line Ray is still writing is left out, so
    tests may poll a running trial."""
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    text = path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and not text.endswith("\n"):
        lines.pop()  # possibly half-written: whole once its newline is there
    return [json.loads(line) for line in lines]


def read_json_if_whole(path: Path) -> Any:
    """The JSON in `path`, or None while the file is missing, empty or half-written (a test
    polling a file another process is writing)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


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


# ---------------------------------------------------------------------------------------------
# A fake experiment folder: the files Ray Tune and the trainable leave, written by hand, so the
# export is tested on real files without starting Ray or training anything.

FAKE_SPEC: dict[str, Any] = {
    "name": "iou",
    "experiment": {"metric": METRIC, "mode": "min", "num_samples": 6, "max_concurrent": 2,
                   "max_t": 1500, "grace_period": 300, "reduction_factor": 3,
                   "searcher_seed": 0, "n_startup_trials": 3, "cpus_per_trial": 1,
                   "gpus_per_trial": 0, "max_failures": 0},
    "base": {
        "seed": 42,
        "iou_loss": "giou",
        "freeze_backbone": False,
        "data": {"synthetic": {"num_train": 64, "num_val": 16, "num_test": 16}},
        "model": {"preset": "tiny", "image_size": 96},
        "training_args": {"learning_rate": 1.0e-4, "warmup_steps": 0.0, "num_train_epochs": 3,
                          "per_device_train_batch_size": 8},
        "evaluation": {"score_threshold": 0.5},
    },
    "space": {
        "iou_loss": {"choice": ["giou", "diou", "ciou"]},
        "freeze_backbone": {"choice": [True, False]},
        "training_args.learning_rate": {"loguniform": [1.0e-5, 1.0e-3]},
        "training_args.warmup_steps": {"uniform": [0.0, 0.2]},
        "training_args.num_train_epochs": {"randint": [2, 6]},
        "seed": 3,
    },
}


def fake_params(iou: str, freeze: bool, lr: float, warmup: float, epochs: int) -> dict:
    """A trial's params.json: flat dotted keys, as Tune writes the sampled config."""
    return {"iou_loss": iou, "freeze_backbone": freeze, "training_args.learning_rate": lr,
            "training_args.warmup_steps": warmup, "training_args.num_train_epochs": epochs,
            "seed": 3}


# name, params, total_steps, [(step, metric)], done flag on last result, errored, checkpoints
FAKE_TRIALS: dict[str, tuple] = {
    # reached ASHA's max_t (1500 < its 3000 planned steps): completed; best 0.20 at 600
    "aaaaa_00000": (fake_params("giou", False, 1e-4, 0.0, 5), 3000,
                    [(300, 0.30), (600, 0.20), (900, 0.25), (1200, 0.26), (1500, 0.27)],
                    True, False, True),
    # the winner: trained all its 1200 steps, best 0.10 at 900 (not its last step)
    "aaaaa_00001": (fake_params("ciou", True, 3.2e-4, 0.15, 4), 1200,
                    [(300, 0.28), (600, 0.15), (900, 0.10), (1200, 0.12)], False, False, True),
    # stopped by ASHA at the first rung
    "aaaaa_00002": (fake_params("diou", False, 2e-5, 0.05, 6), 1500, [(300, 0.40)], True, False,
                    True),
    # errored after reporting the lowest value of all: must not win
    "aaaaa_00003": (fake_params("giou", True, 9e-4, 0.1, 2), 600, [(300, 0.05)], False, True, True),
    # still running when the driver died
    "aaaaa_00004": (fake_params("diou", True, 5e-5, 0.02, 3), 900, [(300, 0.35)], False, False,
                    False),
    # created, never reported
    "aaaaa_00005": (fake_params("ciou", False, 1e-5, 0.2, 2), 600, [], False, False, False),
}
def write_fake_weights(path: Path, value: float) -> Path:
    """A small but whole safetensors file (one tensor filled with `value`)."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"weight": np.full((4,), value, dtype=np.float32)}, str(path))
    return path


def write_fake_trial(exp: Path, index: int, trial_id: str, spec: tuple) -> Path:
    """One trial folder the way Ray Tune and the trainable leave it."""
    trial_params, total_steps, points, done, errored, checkpoints = spec
    trial_dir = exp / f"train_detr_{trial_id}_{index}_iou_loss={trial_params['iou_loss']}"
    trial_dir.mkdir()
    (trial_dir / "params.json").write_text(json.dumps(trial_params))
    lines = []
    for i, (step, value) in enumerate(points):
        lines.append(json.dumps({
            "step": step, "total_steps": total_steps, "epoch": step / 300, METRIC: value,
            "train_loss": 2.0 - step / 1000, "eval_map": 0.1, "eval_map_50": round(1 - value, 6),
            "time_this_iter_s": 10.0,
            "time_total_s": 10.0 * (i + 1), "training_iteration": i + 1, "trial_id": trial_id,
            "done": done and i == len(points) - 1, "config": trial_params,
        }))
        if checkpoints:
            ckpt = trial_dir / f"checkpoint_{i:06d}"
            (ckpt / "model").mkdir(parents=True)
            (ckpt / "model" / "config.json").write_text(json.dumps(
                {"model_type": "detr", "trial": trial_id, "step": step}))
            write_fake_weights(ckpt / "model" / "model.safetensors", step)
            (ckpt / "checkpoint_meta.json").write_text(json.dumps(
                {"step": step, "metric": METRIC, "value": value, "model_dir": "model"}))
    (trial_dir / "result.json").write_text("".join(line + "\n" for line in lines))
    if errored:
        (trial_dir / "error.txt").write_text(
            "Failure # 1 (occurred at 2026-11-26_01-00-00)\nTraceback (most recent call last):\n"
            '  File "trainable.py", line 1, in train\n'
            "ValueError: boxes1 must contain valid boxes (NaN)\n\n")
    return trial_dir


def write_fake_experiment(exp: Path, spec: dict[str, Any] | None = None,
                          trials: dict[str, tuple] | None = None) -> Path:
    """A finished fake search (default: `iou`, six trials in every possible state)."""
    exp.mkdir(parents=True)
    (exp / "search_spec.yaml").write_text(yaml.safe_dump(spec or FAKE_SPEC, sort_keys=False))
    for index, (trial_id, trial) in enumerate((trials or FAKE_TRIALS).items()):
        write_fake_trial(exp, index, trial_id, trial)
    return exp
