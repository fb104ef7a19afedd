"""One search stopped every way a search gets stopped, then finished: real processes, real
signals, `search/run.py` as a subprocess each time.

The same experiment (two trials running side by side, long enough to be caught mid-run) goes
through five driver sessions, each started with the command the previous one printed last:

1. Ctrl-C (SIGINT to the driver's process group, as a terminal sends it): exit 130, trials.csv,
   REPORT.md and the console say "interrupted" with each running trial's step, the last line
   is the exact resume command, no Ray process is left.
2. SIGTERM to the driver: the same, with exit 143.
3. Ctrl-C twice: the driver quits at once (130), its Ray processes are gone, Tune's experiment
   state is still whole JSON.
4. SIGKILL to the driver alone: within 30 s no Ray process of the run is alive (its watchdog
   ended them); nothing else cleans up after it here.
5. The last resume runs to the end, although one trial's worker process is SIGKILLed on the
   way (`max_failures: 1`: Tune retries that trial from its last checkpoint): exit 0, both
   trials completed, the Optuna study kept one trial per Tune trial with every intermediate
   value.

The module fixture runs the sessions once; each test checks one promise on what they left.
Nothing waits on this machine's speed: the trials run behind a gate
(`search.trial.trainable.TRIAL_GATE_ENV`): each reports, then waits while the gate's `hold`
file exists, so every session signals trials that cannot have finished (one new report each),
and the last session releases them after killing a worker.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from search_helpers import (
    METRIC,
    REPO_ROOT,
    RUN_SCRIPT,
    load_study,
    optuna_trial_for,
    output_tail,
    ray_scope,
    ray_trial_states,
    read_results,
    read_trials_csv,
    session_cache,
    trial_dirs,
    write_space,
)

from search.trial.trainable import TRIAL_GATE_ENV

pytestmark = pytest.mark.slow

NAME = "interrupts"
# 32 images / batch 8 = 4 steps per epoch, an evaluation every 4 steps: 40 steps per trial. A
# held trial reports once per session (steps 4, 8, ... 20 in the five sessions), so it cannot
# reach its end before the last session releases the gate, however fast the machine is.
EPOCHS = 10
MAX_T = 40
SESSION_TIMEOUT_S = 240


@dataclass
class Session:
    """What one driver session did and left behind."""

    how: str
    returncode: int
    output: str
    seconds_after_last_signal: float
    rows: list[dict[str, str]] = field(default_factory=list)
    report: str = ""
    record: dict | None = None
    leftovers: list[str] = field(default_factory=list)

    @property
    def last_line(self) -> str:
        return [ln for ln in self.output.splitlines() if ln.strip()][-1]


@dataclass
class Lifecycle:
    experiment_dir: Path
    resume_command: str
    sessions: dict[str, Session]


def _result_counts(exp: Path) -> dict[str, int]:
    return {d.name: len(read_results(d)) for d in trial_dirs(exp)} if exp.is_dir() else {}


def _unfinished_trials(exp: Path) -> int:
    """Trials still short of MAX_T: two, unless one reached the end in an earlier session.

    How far a trial gets between a signal and its effect depends on the machine's load, so
    a trial can finish in any session; the next session then has only the other to wait for.
    """
    folders = trial_dirs(exp) if exp.is_dir() else []
    finished = sum(1 for d in folders if (r := read_results(d)) and r[-1]["step"] >= MAX_T)
    return 2 - finished


def _wait_for_new_results(exp: Path, before: dict[str, int], proc, log: Path,
                          timeout: float = SESSION_TIMEOUT_S) -> None:
    """Until every unfinished trial has reported more results than in `before`."""
    trials = _unfinished_trials(exp)
    assert trials > 0, "both trials finished before this session"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the driver ended early:\n" + output_tail(
            log.read_text(errors="replace"))
        counts = _result_counts(exp)
        if sum(counts.get(k, 0) > before.get(k, 0) for k in counts) >= trials:
            return
        time.sleep(0.2)
    raise AssertionError("no new results in time:\n" + output_tail(log.read_text()))


def _start(argv: list[str], env: dict[str, str], log: Path, new_session: bool = False):
    import subprocess

    handle = open(log, "wb")  # noqa: SIM115 - the child keeps its own descriptor
    try:
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=new_session)
    finally:
        handle.close()


def _trial_worker(scope, exp: Path):
    """The process running the unfinished trial with the fewest results.

    Ray titles a trial's process after the trainable's actor method and runs it in the trial's
    own working folder, named like the trial's folder. A trial that has just reached MAX_T can
    still have its process for a moment: killing that one fails nothing (seen in CI), so the
    victim is the trial furthest from its end.
    """
    progress = {d.name: (r[-1]["step"] if (r := read_results(d)) else 0)
                for d in trial_dirs(exp)}
    workers = []
    for proc in scope.processes():
        try:
            if not ("ImplicitFunc" in proc.name()
                    or any("ImplicitFunc" in part for part in proc.cmdline())):
                continue
            folder = Path(proc.cwd()).name
        except (OSError, psutil.Error):
            continue
        if progress.get(folder, MAX_T) < MAX_T:
            workers.append((progress[folder], proc))
    assert workers, (progress, [p.name() for p in scope.processes()])
    return min(workers, key=lambda pair: pair[0])[1]


def _command_argv(command: str) -> list[str]:
    """The printed `python search/run.py ...` with this interpreter."""
    parts = shlex.split(command)
    assert parts[:2] == ["python", "search/run.py"], command
    return [sys.executable, *parts[1:]]


def _session(how: str, argv: list[str], exp: Path, scope, root: Path,
             send: list[tuple[str, int]]) -> Session:
    """Run one driver session, deliver `send` [(target, signal)] once trials report, wait."""
    log = root / f"{how}.log"
    before = _result_counts(exp)
    proc = _start(argv, scope.env, log, new_session=True)
    last_signal = time.monotonic()
    try:
        if send:
            _wait_for_new_results(exp, before, proc, log)
            for index, (target, signum) in enumerate(send):
                if index:
                    time.sleep(0.5)
                if target == "group":
                    os.killpg(proc.pid, signum)
                elif target == "worker":
                    _trial_worker(scope, exp).send_signal(signum)
                elif target == "release":
                    (root / "gate" / "hold").unlink()
                else:
                    proc.send_signal(signum)
                last_signal = time.monotonic()
        returncode = proc.wait(timeout=SESSION_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - last_signal
    left = scope.wait_gone(30)
    leftovers = [" ".join(p.cmdline())[:120] for p in left]
    if left:
        scope.kill_all()
    session = Session(how, returncode, log.read_text(errors="replace"), seconds,
                      leftovers=leftovers)
    if (exp / "trials.csv").is_file():
        session.rows = read_trials_csv(exp)
    if (exp / "REPORT.md").is_file():
        session.report = (exp / "REPORT.md").read_text()
    if (exp / "interrupted.json").is_file():
        session.record = json.loads((exp / "interrupted.json").read_text())
    return session


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Lifecycle:
    root = tmp_path_factory.mktemp("interrupts")
    space = write_space(root / "space.yaml", NAME,
                        {"training_args.learning_rate": {"loguniform": [1.0e-4, 3.0e-3]}},
                        num_samples=2, max_concurrent=2, grace_period=MAX_T, max_t=MAX_T,
                        epochs=EPOCHS, logging_steps=4, max_failures=1)
    storage = root / "results"
    exp = storage / NAME
    first = [sys.executable, RUN_SCRIPT, "--space", str(space), "--storage", str(storage),
             "--no-dashboard"]
    expected = shlex.join(["python", "search/run.py", "--space", str(space), "--name", NAME,
                           "--resume", "--storage", str(storage), "--no-dashboard"])
    sessions: dict[str, Session] = {}
    (root / "gate").mkdir()
    (root / "gate" / "hold").touch()  # trials wait after each report until the last session
    with ray_scope(session_cache(tmp_path_factory), **{TRIAL_GATE_ENV: str(root / "gate")}) \
            as scope:
        plan = [
            ("sigint", first, [("group", signal.SIGINT)]),
            ("sigterm", None, [("driver", signal.SIGTERM)]),
            ("double_ctrl_c", None, [("group", signal.SIGINT), ("group", signal.SIGINT)]),
            ("sigkill", None, [("driver", signal.SIGKILL)]),
            ("finish", None, [("worker", signal.SIGKILL), ("release", 0)]),
        ]
        for how, argv, send in plan:
            # every session after the first runs the command the first one printed last
            sessions[how] = _session(how, argv or _command_argv(expected), exp, scope, root,
                                     send)
    return Lifecycle(exp, expected, sessions)


def _interrupted_rows(session: Session) -> dict[str, int]:
    steps = {}
    for row in session.rows:
        assert row["status"].startswith("interrupted at step "), row
        steps[row["trial_id"]] = int(row["status"].rsplit(" ", 1)[-1])
        assert int(row["last_step"]) == steps[row["trial_id"]] > 0, row
    return steps


@pytest.mark.parametrize(("how", "code", "name"), [("sigint", 130, "SIGINT"),
                                                    ("sigterm", 143, "SIGTERM")])
def test_a_signal_stops_the_search_resumably_and_says_so(lifecycle: Lifecycle, how: str,
                                                         code: int, name: str) -> None:
    session = lifecycle.sessions[how]
    assert session.returncode == code, output_tail(session.output)
    assert session.last_line == lifecycle.resume_command
    assert session.leftovers == [], session.leftovers
    # both trials were running: trials.csv, REPORT.md, the record and the console agree
    steps = _interrupted_rows(session)
    assert len(steps) == 2
    assert session.record is not None and session.record["signal"] == name
    assert session.record["running_trials"] == steps
    assert session.record["resume_command"] == lifecycle.resume_command
    assert f"**Interrupted** by {name}" in session.report
    assert "2 interrupted" in session.report and lifecycle.resume_command in session.report
    for trial_id, step in steps.items():
        assert f"trial {trial_id} interrupted at step {step}" in session.output
        assert f"`{trial_id}` at step {step}" in session.report
    assert "Tuner.restore" not in session.output  # Ray's own hint is not ours to print
    assert f"interrupted by {name}" in session.output


def test_resumed_sessions_continue_the_interrupted_trials(lifecycle: Lifecycle) -> None:
    first = _interrupted_rows(lifecycle.sessions["sigint"])
    second = _interrupted_rows(lifecycle.sessions["sigterm"])
    assert set(first) == set(second)
    assert all(second[t] >= first[t] for t in first), (first, second)


def test_second_ctrl_c_quits_at_once_and_leaves_the_experiment_whole(
        lifecycle: Lifecycle) -> None:
    session = lifecycle.sessions["double_ctrl_c"]
    assert session.returncode == 130, output_tail(session.output)
    assert session.seconds_after_last_signal < 15, session.seconds_after_last_signal
    assert "quitting now" in session.output
    assert session.last_line == lifecycle.resume_command
    assert session.leftovers == [], session.leftovers
    for state in lifecycle.experiment_dir.glob("experiment_state-*.json"):
        json.loads(state.read_text())  # whole JSON, never torn
    assert not list(lifecycle.experiment_dir.glob(".*.tmp-*"))


def test_driver_sigkill_leaves_no_ray_process_behind(lifecycle: Lifecycle) -> None:
    session = lifecycle.sessions["sigkill"]
    assert session.returncode == -signal.SIGKILL
    assert session.leftovers == [], session.leftovers  # gone within 30 s: the watchdog


def test_the_last_resume_finishes_every_trial_and_keeps_the_study(
        lifecycle: Lifecycle) -> None:
    from optuna.trial import TrialState

    session = lifecycle.sessions["finish"]
    assert session.returncode == 0, output_tail(session.output)
    assert session.last_line.startswith("done: ")
    assert session.leftovers == []
    assert session.record is None  # the interruption no longer holds
    assert "Interrupted" not in session.report
    assert [r["status"] for r in session.rows] == ["completed", "completed"], session.rows
    exp = lifecycle.experiment_dir
    # the killed worker's trial failed once and was retried from its checkpoint
    failures = {t: s["num_failures"] for t, s in ray_trial_states(exp).items()}
    assert sorted(failures.values()) == [0, 1], failures
    assert "retrying from its last checkpoint" in session.output
    study = load_study(exp, NAME)
    assert len(study.trials) == 2
    for trial in trial_dirs(exp):
        optuna_trial = optuna_trial_for(study, json.loads((trial / "params.json").read_text()))
        assert optuna_trial.state == TrialState.COMPLETE
        results = read_results(trial)
        assert results[-1]["step"] == MAX_T
        # every step reported across the five sessions reached the study
        assert set(optuna_trial.intermediate_values) == {r["step"] for r in results}
        assert all(r[METRIC] > 0 for r in results)
