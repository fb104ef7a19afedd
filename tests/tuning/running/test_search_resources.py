"""A trial that no node of the Ray cluster can hold is refused, not waited for in silence.

Found by hand: `gpus_per_trial: 1` on a machine without a GPU left the search hanging with an
empty trial folder and no word (Tune's warning is below the log level the driver shows). The
request here, 64 GPUs a trial, fits no machine's single node; the driver starts its local Ray,
sees no node with that many, and exits 2 with one line naming the space file and key, the new
experiment folder removed, no Ray process left.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from search_helpers import ray_scope, run_main_in_process, session_cache, write_space

from search.run import main as run_main

pytestmark = pytest.mark.slow


def test_a_trial_larger_than_any_node_exits_2_and_leaves_nothing(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    space = write_space(tmp_path / "space.yaml", "too-big",
                        {"training_args.learning_rate": {"loguniform": [1.0e-4, 1.0e-3]}},
                        num_samples=1)
    text = space.read_text().replace("gpus_per_trial: 0", "gpus_per_trial: 64")
    assert text != space.read_text()
    space.write_text(text)
    storage = tmp_path / "results"
    with ray_scope(session_cache(tmp_path_factory)) as scope:
        proc = run_main_in_process(run_main, ["--space", space, "--storage", storage,
                                              "--no-dashboard"], scope.env)
        scope.assert_no_leftovers()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {space}: experiment.resources.gpus_per_trial: a trial "
                               "asks for 64 GPU, but no node of the Ray cluster has more than ")
    assert lines[0].endswith("(lower it, here or with --gpus-per-trial, or join a cluster that "
                             "has them with --address)")
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (storage / "too-big").exists()
