"""benchmarks/run_pool.py: jobs in spawned processes, each record handed over as it ends."""

from __future__ import annotations

from benchmarks.run_pool import run_pool


def test_every_job_is_recorded_once_and_stop_after_starts_none() -> None:
    seen: list[dict] = []
    jobs = [[("job", n)] for n in range(3)]
    assert run_pool(dict, jobs, 2, None, seen.append) == 3  # dict(job): a picklable worker
    assert sorted(r["job"] for r in seen) == [0, 1, 2]
    assert run_pool(dict, jobs, 2, 0.0, seen.append) == 0  # past stop_after: nothing starts
    assert len(seen) == 3
