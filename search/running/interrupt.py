"""Ctrl-C (SIGINT) and SIGTERM on a running search: stop, keep everything, say how to resume.

Tune handles SIGINT itself (it saves the running trials as RUNNING, so `Tuner.restore` continues
them) but not SIGTERM (`ray.init` makes it a bare `sys.exit`), so `SearchInterrupts` takes both
for the whole driver, Tune's own handler off. A first signal inside `Tuner.fit()` goes to Tune's
SIGUSR1 handler, which stops as for Ctrl-C; outside the loop it raises `SearchInterrupted`. A
second signal quits at once, once Tune's state copy in flight (a background thread; cut, it
leaves a torn `experiment_state-*.json`) has had a moment to land.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from search.store.layout import FINALISTS_DIR, INTERRUPTED_FILE, as_int
from search.store.storage import ExperimentPath, write_json_atomic

SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
#: How long a second signal waits for Tune's state copy in flight (seconds).
STATE_COPY_WAIT_S = 3.0


class SearchInterrupted(BaseException):
    """A stop signal outside Tune's loop; unwinds the driver (not an `Exception`, so no
    library's `except Exception` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"{SIGNAL_NAMES.get(signum, signum)} received")
        self.signum = signum


@dataclass
class SearchInterrupts:
    """SIGINT / SIGTERM handling of one search driver (see the module docstring)."""

    final_line: Callable[[], str] = lambda: ""  # printed last: the command that resumes
    quit_now: Callable[[], None] = lambda: None  # second signal: end the own Ray processes
    signum: int | None = None
    count: int = 0
    in_tune_loop: bool = False
    _previous: dict[int, Any] = field(default_factory=dict)

    @property
    def interrupted(self) -> bool:
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        return SIGNAL_NAMES.get(self.signum, str(self.signum)) if self.signum else ""

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM: what a shell reports for a process they ended."""
        return 128 + (self.signum or signal.SIGINT)

    def install(self) -> None:
        """Take SIGINT and SIGTERM (again after `ray.init`, which sets its own SIGTERM)."""
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous.setdefault(signum, signal.signal(signum, self._handle))

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    @contextmanager
    def tune_loop(self) -> Iterator[None]:
        """Around `Tuner.fit()`: a first signal goes to Tune instead of raising here, and
        Tune's "Trials did not complete" error (true by design then) is not logged."""
        def noise(record: logging.LogRecord) -> bool:
            return not (self.interrupted and str(record.msg).startswith("Trials did not complete"))

        tune_logger = logging.getLogger("ray.tune.tune")
        tune_logger.addFilter(noise)
        self.in_tune_loop = True
        try:
            yield
        finally:
            self.in_tune_loop = False
            tune_logger.removeFilter(noise)

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count > 1:
            self._quit(signum)
            return
        self.signum = signum
        key = "Ctrl-C" if signum == signal.SIGINT else self.signal_name
        tune_handler = signal.getsignal(signal.SIGUSR1)
        if self.in_tune_loop and callable(tune_handler):
            _say(f"{key}: stopping the running trials and saving the experiment "
                 f"(press Ctrl-C again to quit at once)")
            tune_handler(signal.SIGUSR1, frame)  # sets Tune's experiment_interrupted_event
            return
        _say(f"{key}: stopping (press Ctrl-C again to quit at once)")
        raise SearchInterrupted(signum)

    def _quit(self, signum: int) -> None:
        self.signum = self.signum or signum
        _say("quitting now")
        try:
            # let Tune's background copies of its experiment state finish (bounded)
            deadline = time.monotonic() + STATE_COPY_WAIT_S
            for thread in threading.enumerate():
                if thread is not threading.current_thread() \
                        and thread.name.endswith("(entrypoint)"):
                    thread.join(max(0.0, deadline - time.monotonic()))
            print(f"quit at once ({self.signal_name}); continue with:", flush=True)
            print(self.final_line(), flush=True)
            self.quit_now()  # last: it may end the Ray processes this one depends on
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(self.exit_code)


def _say(line: str) -> None:
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)


def running_trials(experiment_dir: ExperimentPath) -> dict[str, int | None]:
    """Trials Tune saved as RUNNING (it keeps them so when interrupted) -> last reported step."""
    from search.cluster.ray_internals import trial_states
    from search.results.reading import read_results

    running: dict[str, int | None] = {}
    for folder, (trial_id, status) in trial_states(experiment_dir).items():
        if status == "RUNNING" and trial_id:
            results = read_results(experiment_dir / folder)
            running[trial_id] = as_int(results[-1].get("step")) if results else None
    return dict(sorted(running.items()))


def record_interruption(experiment_dir: ExperimentPath, interrupts: SearchInterrupts,
                        progress: Any, resume_command: str, stage: str = "search") -> None:
    """After `Tuner.fit()` stopped for a signal: `interrupted.json`, a line per running trial."""
    trials_dir = experiment_dir / FINALISTS_DIR if stage == "finalists" else experiment_dir
    running = running_trials(trials_dir)
    write_interrupt_record(experiment_dir, interrupts.signal_name, running, resume_command,
                           stage=stage)
    if progress is not None:
        progress.mark_interrupted(running)


def write_interrupt_record(experiment_dir: ExperimentPath, signal_name: str,
                           running: dict[str, int | None], resume_command: str,
                           stage: str = "search") -> ExperimentPath:
    """`interrupted.json`: signal, time, stage (`search` / `finalists`), the trials it stopped
    (id -> last step) and the command that resumes the search."""
    return write_json_atomic(experiment_dir / INTERRUPTED_FILE, {
        "signal": signal_name, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stage": stage, "running_trials": running, "resume_command": resume_command,
    })


def clear_interrupt_record(experiment_dir: ExperimentPath) -> None:
    """A resumed search continues the interrupted trials: the old record no longer holds."""
    (experiment_dir / INTERRUPTED_FILE).unlink(missing_ok=True)
