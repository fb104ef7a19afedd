"""A trial's own output (Hugging Face logs, progress bars, warnings) into its log file.

Trials print a lot: the Trainer's log dicts, "Loading weights" / "Writing model shards" bars,
library warnings. Through Ray they would all reach the driver's terminal interleaved. Inside
the trainable the process's file descriptors 1 and 2 are pointed at `trial.log` in the trial's
folder for the length of the trial (C extensions and child processes included), then put back,
so a reused actor's next trial starts clean. The trainable writes it in the trial's working
folder, which Tune copies into the trial's result folder (`SyncConfig(sync_artifacts=True)`)
at each checkpoint and when the trial ends, on any node and any storage.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def output_to_file(path: Path) -> Iterator[Path]:
    """Redirect this process's stdout and stderr (fds 1 and 2) to `path`, appending."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with open(path, "ab", buffering=0) as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        yield path
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
