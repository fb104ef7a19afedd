"""The storage goes away for 20 s mid-search and comes back: the search waits it out, nothing
is lost.

Results go to `s3://` on moto's server behind `OutageProxy`, which cuts every connection and
refuses new ones while it is down. The trials wait at the gate (`TRIAL_GATE_ENV`) after their
first report; once a checkpoint is on S3 the proxy goes down for 20 s and the gate opens, so
the trials' next reports meet the outage whatever the machine's speed; then it comes back.
With `max_failures: 0`, a trial that failed on the outage
would stay errored, so every trial completing proves the trials waited (their reports retry,
`search.store.storage.patiently`), and so did the driver (the Optuna journal it uploads after
every report). Read back from the bucket: trials.csv, every trial's results to its last step,
the study with one finished trial per Tune trial and every reported step, a whole REPORT.md.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from s3_server import OutageProxy, s3_server
from search_helpers import (
    CLI_TIMEOUT_S,
    RUN_SCRIPT,
    output_tail,
    ray_scope,
    run_cli,
    session_cache,
    start_cli,
    write_space,
)

from search.store.storage import STORAGE_WAIT_ENV
from search.trial.trainable import TRIAL_GATE_ENV

pytestmark = pytest.mark.slow

NAME = "outage"
STEPS = 24  # 32 images / batch 8 x 6 epochs
OUTAGE_S = 20


def test_a_storage_outage_mid_search_is_waited_out_and_loses_nothing(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    space = write_space(tmp_path / "space.yaml", NAME,
                        {"training_args.learning_rate": {"loguniform": [1.0e-4, 3.0e-3]}},
                        num_samples=2, max_concurrent=2, epochs=STEPS // 4, logging_steps=2,
                        grace_period=STEPS, max_t=STEPS, max_failures=0)
    log = tmp_path / "search.log"
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "hold").touch()  # the trials wait after their first report until the outage
    with s3_server() as s3, \
            ray_scope(session_cache(tmp_path_factory), **{TRIAL_GATE_ENV: str(gate)}) as scope:
        proxy = OutageProxy(int(s3.endpoint.rsplit(":", 1)[1]))
        env = {**scope.env, **s3.env, "AWS_ENDPOINT_URL": proxy.endpoint}
        proc = start_cli(RUN_SCRIPT, ["--space", space, "--storage", s3.uri("results"),
                                      "--no-dashboard"], env, log)
        try:
            deadline = time.monotonic() + CLI_TIMEOUT_S
            while not any(k.endswith("/checkpoint_meta.json")
                          for k in s3.keys(f"results/{NAME}/")):
                assert proc.poll() is None, output_tail(log.read_text())
                assert time.monotonic() < deadline, output_tail(log.read_text())
                time.sleep(0.2)
            proxy.go_down()
            (gate / "hold").unlink()  # the trials' next reports meet the outage
            time.sleep(OUTAGE_S)  # the outage itself: nothing here waits on the machine's speed
            proxy.come_back()
            returncode = proc.wait(timeout=CLI_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proxy.close()
        output = log.read_text(errors="replace")
        scope.assert_no_leftovers()
        prefix = f"results/{NAME}/"
        keys = [k.removeprefix(prefix) for k in s3.keys(prefix)]
        rows = list(csv.DictReader(io.StringIO(s3.read(prefix + "trials.csv").decode())))
        trials = {t: [json.loads(line) for line in
                      s3.read(f"{prefix}{t}/result.json").decode().splitlines()]
                  for t in sorted({k.split("/")[0] for k in keys if k.startswith("train_detr_")})}
        report = s3.read(prefix + "REPORT.md").decode()
        said = output + "".join(s3.read(f"{prefix}{t}/trial.log").decode() for t in trials)
        journal = tmp_path / "optuna_study.log"
        journal.write_bytes(s3.read(prefix + "optuna_study.log"))

    assert proxy.refused > 0  # the storage really was away
    assert returncode == 0, output_tail(output)
    # whoever met the outage (a trial reporting, the driver writing the study) said so
    assert "does not answer" in said and "answers again" in said, output_tail(said)
    assert not re.search(r"trial \w+ failed", output), output_tail(output)  # none retried
    assert "Traceback" not in output, output_tail(output)  # Ray's sync errors: one line each
    assert output.rstrip().endswith(f"done: {s3.uri('results')}/{NAME}/REPORT.md")
    assert [r["status"] for r in rows] == ["completed", "completed"], rows
    assert len(trials) == 2 and all(r[-1]["step"] == STEPS for r in trials.values())
    assert f"# Search report: {NAME}" in report and "- Trials: 2 (2 completed)" in report
    study = optuna.load_study(study_name=NAME,
                              storage=JournalStorage(JournalFileBackend(str(journal))))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert sorted(sorted(t.intermediate_values) for t in study.trials) == \
        sorted(sorted(r["step"] for r in results) for results in trials.values())


def test_an_outage_longer_than_the_wait_stops_with_the_resume_command(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The storage stays away past `$DETR_SEARCH_STORAGE_WAIT_S` (3 s here) until the driver
    has stopped: one `error:` line naming the storage, exit 1, the resume command last, and no
    REPORT.md on the bucket, whole or half. Once it is back, that command finishes the search:
    each trial once in trials.csv and the study, the report whole."""
    space = write_space(tmp_path / "space.yaml", NAME,
                        {"training_args.learning_rate": {"loguniform": [1.0e-4, 3.0e-3]}},
                        num_samples=2, max_concurrent=2, epochs=2, logging_steps=2,
                        grace_period=8, max_t=8, max_failures=0)
    log = tmp_path / "search.log"
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "hold").touch()
    with s3_server() as s3, \
            ray_scope(session_cache(tmp_path_factory), **{TRIAL_GATE_ENV: str(gate)}) as scope:
        proxy = OutageProxy(int(s3.endpoint.rsplit(":", 1)[1]))
        env = {**scope.env, **s3.env, "AWS_ENDPOINT_URL": proxy.endpoint,
               STORAGE_WAIT_ENV: "3"}
        args = ["--space", space, "--storage", s3.uri("results"), "--no-dashboard"]
        proc = start_cli(RUN_SCRIPT, args, env, log)
        try:
            deadline = time.monotonic() + CLI_TIMEOUT_S
            while not any(k.endswith("/checkpoint_meta.json")
                          for k in s3.keys(f"results/{NAME}/")):
                assert proc.poll() is None, output_tail(log.read_text())
                assert time.monotonic() < deadline, output_tail(log.read_text())
                time.sleep(0.2)
            proxy.go_down()
            (gate / "hold").unlink()
            returncode = proc.wait(timeout=CLI_TIMEOUT_S)  # down until the driver stopped
            stopped_with = s3.keys(f"results/{NAME}/")  # through moto itself, not the proxy
            proxy.come_back()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        output = log.read_text(errors="replace")
        resume_line = output.rstrip().splitlines()[-1]
        resumed = run_cli(RUN_SCRIPT, [*resume_line.split()[2:]], env) \
            if resume_line.startswith("python search/run.py") else None
        proxy.close()
        scope.assert_no_leftovers()
        prefix = f"results/{NAME}/"
        rows = list(csv.DictReader(io.StringIO(s3.read(prefix + "trials.csv").decode())))
        report = s3.read(prefix + "REPORT.md").decode()
        journal = tmp_path / "optuna_study.log"
        journal.write_bytes(s3.read(prefix + "optuna_study.log"))

    assert proxy.refused > 0
    assert returncode == 1, output_tail(output)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "did not answer" in errors[0], output_tail(output)
    assert "Traceback" not in output, output_tail(output)
    assert resume_line.startswith("python search/run.py") and "--resume" in resume_line, \
        output_tail(output)
    assert f"{prefix}REPORT.md" not in stopped_with
    assert resumed is not None and resumed.returncode == 0, output_tail(resumed)
    assert len(rows) == 2 and len({r["trial_id"] for r in rows}) == 2, rows
    assert all(r["status"] == "completed" or r["status"].startswith("errored") for r in rows)
    assert f"# Search report: {NAME}" in report and "- Trials: 2 (" in report
    study = optuna.load_study(study_name=NAME,
                              storage=JournalStorage(JournalFileBackend(str(journal))))
    assert len(study.trials) == 2
