"""How to spend a machine's cores on a search: one trial with all threads, or one per core?

Measures aggregate optimizer steps/s of the tiny DETR on the embedded default data, side by
side in one run: (a) one training process using every core as torch threads, (b) one process
per core with one thread each, all running at once (what `cpus_per_trial: 1` packs). The
report is the ratio b/a; it decides the `resources` of the shipped search spaces.

    python benchmarks/trial_packing.py [--steps 150]   # report -> results/benchmarks/
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _train_steps(threads: int, steps: int, queue: mp.Queue) -> None:
    """Run `steps` optimizer steps of the default run; put steps/s on the queue."""
    from step_timer import steps_per_second

    queue.put(steps_per_second(steps, threads=threads))


def measure(processes: int, threads: int, steps: int) -> float:
    """Aggregate steps/s of `processes` concurrent trainings with `threads` threads each."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_train_steps, args=(threads, steps, queue))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    rates = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    one_wide = measure(1, cores, args.steps)
    packed = measure(cores, 1, args.steps)
    report = {
        "benchmark": "trial_packing",
        "machine": f"{platform.machine()}, {cores} cores",
        "steps_per_process": args.steps,
        "one_trial_all_threads_steps_per_s": round(one_wide, 2),
        "one_trial_per_core_total_steps_per_s": round(packed, 2),
        "ratio_packed_over_wide": round(packed / one_wide, 3),
    }
    out = ROOT / "results" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    (out / "trial_packing.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Trial packing on this machine", "",
        f"`python benchmarks/trial_packing.py --steps {args.steps}` on {report['machine']}.", "",
        "| layout | aggregate optimizer steps/s |", "| --- | --- |",
        f"| 1 trial x {cores} threads | {one_wide:.2f} |",
        f"| {cores} trials x 1 thread | {packed:.2f} |", "",
        f"Ratio packed / wide: **{packed / one_wide:.2f}**. Above 1, a search gets more trials "
        "through by giving each trial one core (`cpus_per_trial: 1`).",
    ]
    (out / "trial_packing.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
