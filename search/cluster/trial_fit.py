"""Whether a trial's resources fit on a node of the Ray cluster, checked before Tune starts.

Tune waits for resources that never come without a word (its warning is below the log level
the driver shows): `gpus_per_trial: 1` on a machine without a GPU hung a search with an empty
trial folder. On a cluster the driver started that is a mistake in the request; on a joined
one (`--address`) an autoscaler may still add such a node, so it is said once and the search
waits.
"""

from __future__ import annotations

from typing import Any

from detr_core.files.errors import UserInputError


def check_trials_fit(spec: Any, joined: bool) -> None:
    """A trial's CPUs and GPUs (`spec.resources`) must fit on one alive node of the cluster
    Ray is connected to; `joined`: a cluster this driver did not start (a warning, not an
    error)."""
    import ray

    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    asked = {"CPU": ("cpus_per_trial", spec.resources.cpus_per_trial),
             "GPU": ("gpus_per_trial", spec.resources.gpus_per_trial)}
    for resource, (key, amount) in asked.items():
        most = max((node.get(resource, 0.0) for node in nodes), default=0.0)
        if amount <= most:
            continue
        problem = (f"a trial asks for {amount:g} {resource}, but no node of the Ray cluster "
                   f"has more than {most:g}")
        if joined:
            print(f"warning: {problem}; the search waits for the cluster to add one",
                  flush=True)
            continue
        raise UserInputError(f"{problem} (lower it, here or with --{key.replace('_', '-')}, "
                             "or join a cluster that has them with --address)",
                             source=str(spec.source), key=f"experiment.resources.{key}")
