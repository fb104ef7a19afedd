"""A tiny process that ends a search's own Ray processes once its driver is gone.

The driver holds the write end of its stdin: however the driver ends (SIGKILL and the OOM
killer included) the pipe closes, and the watchdog ends every process marked with the driver's
owner id. It runs in its own session, unmarked: `python -m search.cluster.watchdog OWNER LOG`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from search.cluster.orphans import OWNER_ENV


@dataclass
class Watchdog:
    """The driver's handle on its watchdog process."""

    process: subprocess.Popen

    def stop(self) -> None:
        """Tell the watchdog the driver shut Ray down; it sweeps once more and exits."""
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.write(b"done\n")
            self.process.stdin.close()


def start_watchdog(owner: str, log_file: Path) -> Watchdog:
    """Start the watchdog of the processes marked `owner`."""
    import search

    root = str(Path(search.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k != OWNER_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    return Watchdog(subprocess.Popen(
        [sys.executable, "-m", "search.cluster.watchdog", owner, str(log_file)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env, start_new_session=True, close_fds=True,
    ))


def watch(owner: str, log_file: Path) -> int:
    """Block until the driver closes stdin, then end the processes marked `owner`."""
    from search.cluster.orphans import end_own_processes

    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    finished = any(line.strip() == b"done" for line in sys.stdin.buffer)
    ended = end_own_processes(owner)
    if ended or not finished:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        how = "shut Ray down" if finished else "ended without shutting Ray down"
        with open(log_file, "a", encoding="utf-8") as log:
            log.write(f"{stamp} driver of {owner} {how}; ended {len(ended)} Ray process(es)"
                      f"{': ' + ', '.join(ended) if ended else ''}\n")
    return 0


if __name__ == "__main__":
    sys.exit(watch(sys.argv[1], Path(sys.argv[2])))
