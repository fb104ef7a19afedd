"""What a search prints while it runs (`search.running.console`), a trial's log file
(`search.trial.trainable`), the HParams in its TensorBoard events
(`search.results.tensorboard_hparams`)
and the time budget (`search.running.time_budget`), driven by the same hooks Ray Tune calls.

The real search (tests/scenarios/test_search_e2e.py,
tests/tuning/running/test_search_budget.py) checks the same lines in the output of a real run;
here every event is produced on purpose, including the rare ones.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from search.running.console import SearchProgress, format_duration
from search.running.time_budget import TimeBudget
from search.space.spec import ResourceSpec, SchedulerSpec, SearcherSpec, SearchSpec
from search.store.storage import UriPath

METRIC = "eval_loss_bbox"
SPACE = {"iou_loss": {"choice": ["giou", "diou"]},
         "training_args.max_grad_norm": {"qloguniform": [0.1, 1.0, 0.1]}, "seed": 3}
EVENT_LINE = re.compile(r"^\[\s*\d+:\d\d\] trial (\w+) (.+)$")


def _spec() -> SearchSpec:
    return SearchSpec(name="c", metric=METRIC, mode="min", num_samples=3, max_concurrent=2,
                      scheduler=SchedulerSpec(grace_period=2, reduction_factor=2, max_t=8),
                      searcher=SearcherSpec(seed=0, n_startup_trials=3),
                      resources=ResourceSpec(), max_failures=1,
                      base={}, space=SPACE, source=Path("c.yaml"))


class FakeTrial:
    """The attributes of a Tune `Trial` the callbacks read."""

    def __init__(self, trial_id: str, config: dict[str, Any], folder: Path | None = None,
                 error: str | None = None) -> None:
        self.trial_id, self.config = trial_id, config
        self.local_path = str(folder) if folder else None
        self.evaluated_params = config
        self.error_file = None
        if error and folder:  # Ray's staging copy; the experiment keeps the same file name
            self.error_file = str(folder / "error.txt")
            Path(self.error_file).write_text(f"Traceback (most recent call last):\n{error}\n")
            self.run_metadata = SimpleNamespace(error_filename="error.txt")
            self.storage = SimpleNamespace(trial_dir_name=f"train_{trial_id}_lr=1e-3")

    def init_local_path(self) -> None:
        Path(self.local_path).mkdir(parents=True, exist_ok=True)


def _result(step: int, value: float, done: bool = False, total: int = 8) -> dict:
    return {"step": step, METRIC: value, "total_steps": total, "done": done}


def _events(stream: io.StringIO) -> list[tuple[str, str]]:
    lines = stream.getvalue().splitlines()
    assert all(EVENT_LINE.match(line) for line in lines), lines
    return [EVENT_LINE.match(line).groups() for line in lines]


def test_not_a_terminal_one_line_per_trial_event(tmp_path: Path) -> None:
    out = io.StringIO()
    experiment = tmp_path / "results" / "iou"
    progress = SearchProgress(_spec(), stream=out, tty=False, experiment=experiment)
    a = FakeTrial("a1", {"iou_loss": "giou", "training_args.max_grad_norm": 0.2325, "seed": 3})
    b = FakeTrial("b2", {"iou_loss": "diou", "training_args.max_grad_norm": 0.5, "seed": 3})
    c = FakeTrial("c3", {"iou_loss": "diou", "training_args.max_grad_norm": 0.9, "seed": 3},
                  tmp_path, error="ValueError: boxes1 must contain valid boxes (NaN)")
    for trial in (a, b):
        progress.on_trial_start(0, [], trial)
    progress.on_trial_result(0, [], a, _result(2, 0.6))
    progress.on_trial_result(0, [], a, _result(4, 0.5))
    progress.on_trial_result(0, [], b, _result(2, 0.7, done=True))  # ASHA cut it at rung 2
    progress.on_trial_complete(0, [], b)                            # no second line
    progress.on_trial_result(0, [], a, _result(6, 0.45))            # no rung at 6
    progress.on_trial_result(0, [], a, _result(8, 0.47, done=True))  # max_t reached
    progress.on_trial_complete(0, [], a)
    progress.on_trial_start(0, [], c)
    progress.on_trial_recover(0, [], c)
    progress.on_trial_start(0, [], c)
    progress.on_trial_result(0, [], c, _result(2, 0.65))
    progress.on_trial_error(0, [], c)
    assert progress.running_trial_ids() == []
    assert _events(out) == [
        ("a1", "started   iou_loss=giou max_grad_norm=0.2"),  # the value it trains with
        ("b2", "started   iou_loss=diou max_grad_norm=0.5"),
        ("a1", f"passed rung 2 at step 2: {METRIC} 0.6"),
        ("a1", f"passed rung 4 at step 4: {METRIC} 0.5"),
        ("b2", f"stopped by ASHA at step 2: {METRIC} 0.7"),
        ("a1", f"finished at step 8: best {METRIC} 0.45"),
        ("c3", "started   iou_loss=diou max_grad_norm=0.9"),
        ("c3", "failed at step 0, retrying from its last checkpoint: "
               "ValueError: boxes1 must contain valid boxes (NaN)"),
        ("c3", "restarted from step 0"),
        ("c3", f"passed rung 2 at step 2: {METRIC} 0.65"),
        ("c3", "errored at step 2: ValueError: boxes1 must contain valid boxes (NaN) "
               f"(traceback: {experiment / 'train_c3_lr=1e-3' / 'error.txt'})"),
    ]


def test_an_error_line_names_the_file_on_the_experiments_storage(tmp_path: Path) -> None:
    """On remote storage the error file is named by the experiment's URI, as every other
    output the search prints (the filesystem options of the query string are not repeated)."""
    experiment = UriPath.from_uri(
        "s3://bucket/results/iou?endpoint_override=127.0.0.1:9&region=us-east-1&scheme=http")
    out = io.StringIO()
    progress = SearchProgress(_spec(), stream=out, tty=False, experiment=experiment)
    trial = FakeTrial("c3", {"iou_loss": "diou", "training_args.max_grad_norm": 0.9}, tmp_path,
                      error="ValueError: boxes1 must contain valid boxes (NaN)")
    progress.on_trial_start(0, [], trial)
    progress.on_trial_error(0, [], trial)
    assert out.getvalue().splitlines()[-1].endswith(
        "(traceback: s3://bucket/results/iou/train_c3_lr=1e-3/error.txt)")


def test_trials_still_running_at_the_budget_are_cut_not_stopped() -> None:
    out = io.StringIO()
    progress = SearchProgress(_spec(), stream=out, tty=False)
    trial = FakeTrial("a1", {"iou_loss": "giou", "training_args.max_grad_norm": 0.3})
    starting = FakeTrial("b2", {"iou_loss": "diou", "training_args.max_grad_norm": 0.5})
    progress.on_trial_start(0, [], trial)
    progress.on_trial_start(0, [], starting)
    progress.on_trial_result(0, [], trial, _result(2, 0.6))
    assert progress.running_trial_ids() == ["a1", "b2"]
    progress.mark_cut(progress.running_trial_ids())
    assert _events(out)[-2:] == [("a1", f"cut by time budget at step 2: best {METRIC} 0.6"),
                                 ("b2", "cut by time budget before its first evaluation")]
    assert "ASHA" not in out.getvalue()
    assert progress.running_trial_ids() == []


def test_terminal_table_is_redrawn_in_place() -> None:
    out = io.StringIO()
    progress = SearchProgress(_spec(), stream=out, tty=True, refresh_s=0.0)
    trial = FakeTrial("a1", {"iou_loss": "giou", "training_args.max_grad_norm": 0.3})
    progress.on_trial_start(0, [], trial)
    first = out.getvalue()
    assert "\x1b[" not in first  # nothing to overwrite yet
    progress.on_trial_result(0, [], trial, _result(4, 0.5))
    progress.on_step_end(0, [])
    text = out.getvalue()[len(first):]
    assert text.startswith(f"\x1b[{len(first.splitlines())}F\x1b[J")  # back up, clear
    table = progress.table_lines()
    assert table[0].startswith("0/3 trials ended | steps 4/24 | elapsed ")
    assert table[1].split() == ["trial", "status", "iou_loss", "max_grad_norm", "step",
                                "best", METRIC]
    assert table[2].split() == ["a1", "running", "giou", "0.3", "4/8", "0.5"]
    assert not any("\n" in line for line in table)


def test_overall_line_counts_planned_steps_and_eta() -> None:
    progress = SearchProgress(_spec(), stream=io.StringIO(), tty=False)
    for tid in ("a", "b"):
        progress.on_trial_start(0, [], FakeTrial(tid, {"iou_loss": "giou"}))
    progress.on_trial_result(0, [], FakeTrial("a", {}), _result(2, 0.6, done=True))  # stopped
    progress.on_trial_result(0, [], FakeTrial("b", {}), _result(4, 0.5, total=6))
    assert progress.steps_done() == 6
    assert progress.steps_planned() == 2 + 6 + 8  # ended, own budget, not started (max_t)
    progress.start = time.monotonic() - 60
    assert progress.overall_line().endswith("elapsed 1:00 | ETA 1:40")  # 60 s * 10/6
    assert format_duration(3723) == "1:02:03"


def test_progress_pickles_without_its_stream() -> None:
    """Tune stores its callbacks in tuner.pkl."""
    progress = SearchProgress(_spec(), stream=io.StringIO(), tty=False)
    progress.on_trial_start(0, [], FakeTrial("a", {"iou_loss": "giou"}))
    copy = pickle.loads(pickle.dumps(progress))
    assert copy.stream is sys.stdout and list(copy.trials) == ["a"]


def test_time_budget_stops_everything_at_the_deadline() -> None:
    budget = TimeBudget(30.0, start=time.time() - 29.0)
    assert not budget("t", {}) and not budget.stop_all() and not budget.reached
    budget.deadline -= 2
    assert budget.stop_all() and budget.reached
    assert not budget("t", {})  # single trials are never stopped by it


def test_trial_output_goes_to_its_log_file(tmp_path: Path) -> None:
    """Python prints, C-level writes and child processes all land in the file, then stop."""
    script = f"""
import os, subprocess, sys, warnings
sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
from pathlib import Path
from search.trial.trainable import output_to_file
with output_to_file(Path({str(tmp_path)!r}) / "trial.log"):
    print("from print")
    os.write(2, b"from fd 2\\n")
    warnings.warn("a library warning")
    subprocess.run([sys.executable, "-c", "print('from a child')"], check=True)
print("after the trial")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "after the trial\n" and proc.stderr == ""
    log = (tmp_path / "trial.log").read_text()
    for line in ("from print", "from fd 2", "a library warning", "from a child"):
        assert line in log, log


@pytest.mark.parametrize("ends", [True, False])
def test_hparams_are_in_the_trials_event_file(tmp_path: Path, ends: bool) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    from search.results.tensorboard_hparams import HParamsLoggerCallback

    logger = HParamsLoggerCallback(SPACE, [METRIC, "eval_map_50"])
    trial = FakeTrial("a1", {"iou_loss": "diou", "training_args.max_grad_norm": 0.2325,
                             "seed": 3}, tmp_path / "trial")
    logger.on_trial_start(0, [], trial)
    logger.on_trial_result(0, [], trial, {"training_iteration": 1, METRIC: 0.5, "step": 2})
    if ends:
        logger.on_trial_complete(0, [], trial)
    else:  # cut by the time budget: Tune never calls its end; the writer is closed at exit
        logger.on_experiment_end([trial])
    (events,) = (tmp_path / "trial").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    assert dict(start.hparams) == {
        "iou_loss": _value(string_value="diou"),
        "training_args.max_grad_norm": _value(number_value=0.2),  # as trained, rounded to q
        "seed": _value(number_value=3.0),
    }
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == [f"ray/tune/{METRIC}",
                                                              "ray/tune/eval_map_50"]
    assert ("_hparams_/session_end_info" in content) == ends


def _value(**kwargs: Any) -> Any:
    from google.protobuf import struct_pb2

    return struct_pb2.Value(**kwargs)
