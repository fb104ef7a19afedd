"""The rules behind stopping a search, in-process and with real signals sent to this process
(or to a fork of it): how a first and a second Ctrl-C / SIGTERM are handled, the resume
command, how an interrupted search reads back (trials.csv, REPORT.md), a full disk, and the
atomic writes failing for real. The whole story with Ray is `test_search_interrupts.py`.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import signal
import sys
from pathlib import Path

import pytest
from search_helpers import FAKE_SPEC, read_trials_csv, write_fake_experiment

from detr_core.files.file_io import temp_path, write_text_atomic
from search.running.cli import parse_args, resume_command
from search.running.interrupt import SearchInterrupted, SearchInterrupts, write_interrupt_record


def test_first_signal_outside_tune_raises_and_is_remembered() -> None:
    interrupts = SearchInterrupts()
    interrupts.install()
    try:
        with pytest.raises(SearchInterrupted):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.1)  # let the handler run
    finally:
        interrupts.restore()
    assert interrupts.signal_name == "SIGTERM" and interrupts.exit_code == 143
    assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"  # Tune leaves SIGINT to us


def test_first_signal_in_the_tune_loop_goes_to_tunes_interrupt() -> None:
    """Tune installs its interrupt for SIGUSR1 when its loop starts: Ctrl-C is passed on."""
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    interrupts = SearchInterrupts()
    interrupts.install()
    try:
        with interrupts.tune_loop():
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0.1)
    finally:
        interrupts.restore()
        signal.signal(signal.SIGUSR1, previous)
    assert received == [signal.SIGUSR1]
    assert interrupts.interrupted and interrupts.exit_code == 130


def test_second_signal_quits_at_once_with_the_resume_command(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a "driver" that gets Ctrl-C twice
        try:
            sys.stdout = sys.stderr = open(write_end, "w", buffering=1)  # noqa: SIM115
            ended = tmp_path / "ended"
            interrupts = SearchInterrupts(final_line=lambda: "python search/run.py --resume",
                                          quit_now=lambda: ended.write_text("yes"))
            interrupts.install()
            try:
                os.kill(os.getpid(), signal.SIGINT)
                signal.sigtimedwait([], 0.1)
            except SearchInterrupted:
                os.kill(os.getpid(), signal.SIGINT)
                signal.sigtimedwait([], 5)
        finally:
            os._exit(99)  # only reached if the second signal did not end the process
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_end) as handle:
        lines = handle.read().splitlines()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 130
    assert (tmp_path / "ended").read_text() == "yes"  # its own Ray processes ended first
    assert lines[-1] == "python search/run.py --resume", lines
    assert "quitting now" in lines


def _args(*flags: str) -> argparse.Namespace:
    return parse_args(["--space", "spaces/my iou.yaml", *flags])


def test_resume_command_keeps_what_changes_the_rest_of_the_search() -> None:
    assert resume_command(_args(), "iou") == \
        "python search/run.py --space 'spaces/my iou.yaml' --name iou --resume"
    assert resume_command(_args("--storage", "s3://bucket/runs", "--address", "auto",
                                "--num-samples", "20", "--cpus-per-trial", "2.0",
                                "--final-seeds", "3", "--no-dashboard", "--time-budget", "2h",
                                "-v"), "iou") == (
        "python search/run.py --space 'spaces/my iou.yaml' --name iou --resume "
        "--storage s3://bucket/runs --num-samples 20 --cpus-per-trial 2 --address auto "
        "--finalists 1 --finalist-seeds 3 --no-dashboard -v")  # --final-seeds 3 as what it means
    assert resume_command(_args("--name", "x"), "x", resume=False).endswith("--name x")


def test_an_interrupted_search_reads_back_as_interrupted(tmp_path: Path) -> None:
    from search.results.export import export_experiment

    spec = {**FAKE_SPEC, "space": {"iou_loss": {"choice": ["giou", "diou"]}}}
    trials = {  # params, total steps, [(step, metric)], done, errored, checkpoints
        "aaaaa_00000": ({"iou_loss": "giou"}, 600, [(300, 0.3), (600, 0.2)], True, False, True),
        "aaaaa_00001": ({"iou_loss": "diou"}, 900, [(300, 0.35)], False, False, False),
        "aaaaa_00002": ({"iou_loss": "giou"}, 900, [], False, False, False),
    }
    exp = write_fake_experiment(tmp_path / "iou", spec, trials)
    command = "python search/run.py --space s.yaml --name iou --resume"
    # aaaaa_00001 reported step 300 and was running; aaaaa_00002 had reported nothing yet
    write_interrupt_record(exp, "SIGINT", {"aaaaa_00001": 300, "aaaaa_00002": None}, command)
    summary = export_experiment(exp, evaluate_winner=False)
    rows = {r["trial_id"]: r["status"] for r in read_trials_csv(exp)}
    assert rows == {"aaaaa_00000": "completed", "aaaaa_00001": "interrupted at step 300",
                    "aaaaa_00002": "interrupted before its first evaluation"}
    assert summary.status_counts == {"completed": 1, "interrupted": 2}
    report = (exp / "REPORT.md").read_text()
    assert "**Interrupted** by SIGINT" in report
    assert "`aaaaa_00001` at step 300, `aaaaa_00002` at step -" in report
    assert f"```\n{command}\n```" in report


def test_a_trial_cut_by_the_budget_before_reporting_says_so(tmp_path: Path) -> None:
    """A budget that ends the search while a trial is still starting: trials.csv says it was
    cut before its first evaluation (it had started), as the console did; not "not started"."""
    from search.results.export import export_experiment
    from search.running.time_budget import write_budget_record

    spec = {**FAKE_SPEC, "space": {"iou_loss": {"choice": ["giou", "diou"]}}}
    trials = {  # params, total steps, [(step, metric)], done, errored, checkpoints
        "aaaaa_00000": ({"iou_loss": "giou"}, 900, [(300, 0.3)], False, False, True),
        "aaaaa_00001": ({"iou_loss": "diou"}, 900, [], False, False, False),
        "aaaaa_00002": ({"iou_loss": "giou"}, 900, [], False, False, False),
    }
    exp = write_fake_experiment(tmp_path / "iou", spec, trials)
    write_budget_record(exp, 30.0, ["aaaaa_00000", "aaaaa_00001"])
    export_experiment(exp, evaluate_winner=False)
    rows = {r["trial_id"]: r["status"] for r in read_trials_csv(exp)}
    assert rows == {"aaaaa_00000": "cut by time budget at step 300",
                    "aaaaa_00001": "cut by time budget before its first evaluation",
                    "aaaaa_00002": "not started"}


def test_a_full_disk_stops_the_search_with_one_line_and_the_resume_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import search.running.driver
    from search.run import main

    space = tmp_path / "space.yaml"
    space.write_text(json.dumps({"space": {"training_args.learning_rate":
                                           {"loguniform": [1e-4, 1e-3]}}}))

    def full(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.json"))

    # run.py imports run_search from the driver when it starts the search
    monkeypatch.setattr(search.running.driver, "run_search", full)
    assert main(["--space", str(space), "--storage", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"error: No space left on device writing {tmp_path / 'x.json'}"
                                    "; free some space, then continue with:")
    assert captured.out.strip().splitlines()[-1] == (
        f"python search/run.py --space {space} --name space --storage {tmp_path / 'out'}")


def test_a_storage_that_stays_away_stops_the_search_with_one_line_and_the_resume_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import search.running.driver
    from search.run import main
    from search.store.storage import StorageUnavailable

    space = tmp_path / "space.yaml"
    space.write_text(json.dumps({"space": {"training_args.learning_rate":
                                           {"loguniform": [1e-4, 1e-3]}}}))

    def away(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise StorageUnavailable("storage s3://b/out/s/REPORT.md did not answer for 300 s (x)")

    monkeypatch.setattr(search.running.driver, "run_search", away)
    assert main(["--space", str(space), "--storage", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == ("error: storage s3://b/out/s/REPORT.md did not answer for "
                                    "300 s (x); once it answers, continue with:")
    assert captured.out.strip().splitlines()[-1] == (
        f"python search/run.py --space {space} --name space --storage {tmp_path / 'out'}")


def test_a_write_the_kernel_refuses_keeps_the_old_file_whole(tmp_path: Path) -> None:
    """A file-size limit makes the kernel refuse the write (EFBIG) as a full disk would
    (ENOSPC): the old file stays, no temporary is left, the error reaches the caller."""
    target = tmp_path / "REPORT.md"
    target.write_text("old report\n")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a signal, then
            resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
            try:
                write_text_atomic(target, "x" * 100_000)
            except OSError as exc:
                code = 0 if exc.errno == errno.EFBIG else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert target.read_text() == "old report\n"
    assert not temp_path(target).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["REPORT.md"]


def test_a_trial_retried_past_a_failure_is_not_errored(tmp_path: Path) -> None:
    """error.txt stays after Tune retried a trial (worker killed, node lost): Ray's own state
    says whether it went on (TERMINATED, or still RUNNING when stopped) or gave up (ERROR)."""
    from search.results.reading import load_trials
    from search.space.spec import SearchSpec

    spec_dict = {**FAKE_SPEC, "space": {"iou_loss": {"choice": ["giou", "diou"]}}}
    trials = {name: ({"iou_loss": "giou"}, 600, [(300, 0.3), (600, 0.2)], True, True, False)
              for name in ("aaaaa_00000", "aaaaa_00001", "aaaaa_00002")}
    exp = write_fake_experiment(tmp_path / "iou", spec_dict, trials)
    folders = sorted(p.name for p in exp.iterdir() if p.is_dir())
    states = ["TERMINATED", "ERROR", "RUNNING"]
    (exp / "experiment_state-2026-11-26_00-00-00.json").write_text(json.dumps({"trial_data": [
        [json.dumps({"trial_id": folder.split("_")[2] + "_" + folder.split("_")[3],
                     "status": state, "relative_logdir": folder}), "{}"]
        for folder, state in zip(folders, states, strict=True)]}))
    spec = SearchSpec.from_yaml_dict(spec_dict, exp / "search_spec.yaml")
    statuses = {t.trial_id: t.status for t in load_trials(exp, spec)}
    assert statuses == {"aaaaa_00000": "completed", "aaaaa_00001": "errored",
                        "aaaaa_00002": "completed"}
