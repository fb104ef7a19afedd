"""Resumable benchmark runs: jobs trained N at a time in fresh processes, each recorded the
moment it ends.

The long CPU benchmarks (`families_from_scratch.py`, `families.py`, `families_bccd.py`) train
one model per job. Each job runs in a spawned process of its own (`maxtasksperchild=1`: no
torch state, thread count or cached dataset carries over from one run to the next), and its
record reaches `on_record` as soon as it finishes, so a session that ends mid-way keeps every
finished run; the caller appends it to its JSONL file and skips it on the next call.
`stop_after` seconds: no new job starts after that long (those running finish).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from typing import Any


def run_pool(worker: Callable[[Any], dict[str, Any]], jobs: Sequence[Any], n_jobs: int,
             stop_after: float | None, on_record: Callable[[dict[str, Any]], None]) -> int:
    """Run `worker(job)` for each job, `n_jobs` at a time; `on_record` gets each result as it
    comes. `worker` must be importable by a spawned process (a module-level function).
    Returns how many jobs finished."""
    start = time.monotonic()
    finished_count = 0
    with multiprocessing.get_context("spawn").Pool(n_jobs, maxtasksperchild=1) as pool:
        pending, running = list(jobs), []
        while pending or running:
            while pending and len(running) < n_jobs and (
                    stop_after is None or time.monotonic() - start < stop_after):
                running.append(pool.apply_async(worker, (pending.pop(0),)))
            if not running:
                break
            finished = next((r for r in running if r.ready()), None)
            if finished is None:
                time.sleep(1)
                continue
            running.remove(finished)
            on_record(finished.get())
            finished_count += 1
    return finished_count
