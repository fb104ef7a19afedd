"""search/running/cli.py: flags, their defaults, --help, overrides and the --dry-run summary."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from search_helpers import run_main_in_process

from detr_core.files.errors import UserInputError
from search.running.cli import (
    build_parser,
    check_dashboard,
    cluster_address,
    describe,
    experiment_path,
    format_seconds,
    parse_args,
    parse_duration,
    resume_command,
    spec_overrides,
    storage_root,
)
from search.space.distributions import describe_distribution
from search.space.spec import load_search_spec

FLAGS = (
    "--space", "--name", "--num-samples", "--max-concurrent", "--cpus-per-trial",
    "--gpus-per-trial", "--address", "--storage", "--resume", "--seed", "--no-dashboard",
    "--dashboard-port", "--final-seeds", "--dry-run", "--max-failures", "--time-budget",
    "-v", "--verbose", "--report-dir", "--warm-start", "--finalists", "--finalist-seeds",
    "--sampler",
)

SPACE = """\
experiment:
  name: iou
  num_samples: 6
  max_concurrent: 2
  scheduler: {grace_period: 300, reduction_factor: 3, max_t: 1500}
  searcher: {seed: 1, n_startup_trials: 3}
space:
  iou_loss: {choice: [giou, diou, ciou]}
  training_args.learning_rate: {loguniform: [1.0e-5, 1.0e-3]}
  training_args.num_train_epochs: {randint: [2, 6]}
  training_args.per_device_train_batch_size: {qrandint: [4, 16, 4]}
  freeze_backbone: {choice: [true, false]}
  seed: 3
"""


def test_defaults() -> None:
    args = parse_args(["--space", "s.yaml"])
    assert args.space == "s.yaml"
    assert args.storage == "results"
    assert args.dashboard_port == 8265
    assert args.final_seeds == 0 and args.finalists is None and args.finalist_seeds is None
    assert not (args.resume or args.dry_run or args.no_dashboard)
    assert (args.verbose, args.time_budget) == (0, None)
    for name in ("name", "num_samples", "max_concurrent", "cpus_per_trial", "gpus_per_trial",
                 "address", "seed", "max_failures", "sampler"):
        assert getattr(args, name) is None, name
    assert spec_overrides(args) == {}


def test_every_flag_parses() -> None:
    args = parse_args([
        "--space", "s.yaml", "--name", "run1", "--num-samples", "12", "--max-concurrent", "3",
        "--cpus-per-trial", "2", "--gpus-per-trial", "0.5", "--address", "ray://head:10001",
        "--storage", "s3://bucket/exp", "--resume", "--seed", "7", "--no-dashboard",
        "--dashboard-port", "8300", "--final-seeds", "3", "--dry-run", "--max-failures", "2",
        "--time-budget", "1h30m", "-vv", "--report-dir", "reports/run1",
    ])
    assert (args.time_budget, args.verbose) == (5400.0, 2)
    assert args.report_dir == Path("reports/run1")
    assert (args.name, args.num_samples, args.max_concurrent) == ("run1", 12, 3)
    assert (args.cpus_per_trial, args.gpus_per_trial) == (2.0, 0.5)
    assert (args.address, args.storage, args.seed) == ("ray://head:10001", "s3://bucket/exp", 7)
    assert args.resume and args.no_dashboard and args.dry_run
    assert (args.dashboard_port, args.final_seeds, args.max_failures) == (8300, 3, 2)
    assert spec_overrides(args) == {
        "name": "run1", "num_samples": 12, "max_concurrent": 3, "cpus_per_trial": 2.0,
        "gpus_per_trial": 0.5, "seed": 7, "max_failures": 2,
        "finalists_top": 1, "finalists_seeds": 3,  # --final-seeds 3
    }


def test_finalist_flags_and_final_seeds_as_their_shorthand(
        capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_args(["--space", "s.yaml", "--finalists", "3", "--finalist-seeds", "2",
                       "--sampler", "gp"])
    assert spec_overrides(args) == {"finalists_top": 3, "finalists_seeds": 2, "sampler": "gp"}
    assert spec_overrides(parse_args(["--space", "s.yaml", "--finalists", "0"])) == {
        "finalists_top": 0}
    for bad in (["--final-seeds", "2", "--finalists", "3"], ["--finalist-seeds", "0"]):
        with pytest.raises(SystemExit) as info:
            parse_args(["--space", "s.yaml", *bad])
        assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--final-seeds S means --finalists 1 --finalist-seeds S: give one or the other" in err


def test_help_exits_0_and_mentions_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in FLAGS:
        assert flag in text, flag
    assert "two trials share a GPU" in text
    parser_flags = {s for a in build_parser()._actions for s in a.option_strings} - {"-h",
                                                                                     "--help"}
    assert parser_flags == set(FLAGS)


@pytest.mark.parametrize("argv", [
    [],                                                    # --space is required
    ["--space", "s.yaml", "--num-samples", "0"],
    ["--space", "s.yaml", "--gpus-per-trial", "-1"],
    ["--space", "s.yaml", "--gpus-per-trial", "half"],
    ["--space", "s.yaml", "--final-seeds", "-1"],
    ["--space", "s.yaml", "--dashboard-port", "70000"],
    ["--space", "s.yaml", "--unknown"],
    ["--space", "s.yaml", "--time-budget", "2 hours"],
    ["--space", "s.yaml", "--time-budget", "0s"],
    ["--space", "s.yaml", "--time-budget", "5x"],
])
def test_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert lines[0].endswith("(see search/run.py --help)"), lines


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400), ("600", 600),
    ("1d", 86400), ("2H", 7200),
])
def test_time_budget_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_seconds(seconds)) == seconds


def test_storage_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert storage_root("results") == str(tmp_path.resolve() / "results")
    assert experiment_path("results/", "iou") == str(tmp_path.resolve() / "results" / "iou")
    assert experiment_path("s3://bucket/root/", "iou") == "s3://bucket/root/iou"


def test_distribution_words() -> None:
    assert describe_distribution({"randint": [2, 6]}) == "randint 2..6 (inclusive)"
    assert describe_distribution({"qrandint": [4, 16, 4]}) == "qrandint 4..16 step 4 (inclusive)"
    assert describe_distribution({"loguniform": [1e-5, 1e-3]}) == (
        "loguniform [1e-05, 0.001] (log scale)")
    assert describe_distribution({"choice": [True, False]}) == "choice true | false"
    assert describe_distribution({"quniform": [0.0, 0.1, 0.01]}) == "quniform [0, 0.1] step 0.01"


def test_dry_run_text(tmp_path: Path) -> None:
    path = tmp_path / "iou.yaml"
    path.write_text(SPACE, encoding="utf-8")
    args = parse_args(["--space", str(path), "--gpus-per-trial", "0.5", "--storage",
                       str(tmp_path / "out"), "--final-seeds", "3", "--dry-run"])
    spec = load_search_spec(args.space, spec_overrides(args))
    text = describe(spec, args)
    assert f"Search 'iou' from {path}" in text
    assert "eval_loss_bbox (min)" in text
    assert "6, at most 2 at a time" in text
    assert "seed 1, 3 random startup trials" in text
    assert "grace_period 300, reduction_factor 3, max_t 1500" in text
    assert "rungs at steps 300, 900;" in text
    assert "1 CPU, 0.5 GPU per trial (2 trials share one GPU)" in text
    assert str(tmp_path / "out" / "iou") in text
    assert "dashboard on http://127.0.0.1:8265" in text
    assert ("finalists   the 1 best configuration(s) x 3 fresh seeds after the search, winner "
            "by mean eval_loss_bbox: adds 3 run(s) of up to 1500 steps (4,500 steps; the "
            "search's 6 trials: at most 9,000)") in text
    assert "embedded default" in text
    assert "Searched (5):" in text and "Fixed (1):" in text
    lines = text.splitlines()
    for key, words in [
        ("iou_loss", "choice giou | diou | ciou"),
        ("training_args.learning_rate", "loguniform [1e-05, 0.001] (log scale)"),
        ("training_args.num_train_epochs", "randint 2..6 (inclusive)"),
        ("training_args.per_device_train_batch_size", "qrandint 4..16 step 4 (inclusive)"),
        ("freeze_backbone", "choice true | false"),
        ("seed", "= 3"),
    ]:
        assert any(line.split() and line.split()[0] == key and line.endswith(words)
                   for line in lines), (key, words)


def test_ray_address_of_the_environment_is_the_cluster_joined(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "iou.yaml"
    path.write_text(SPACE, encoding="utf-8")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.2:6379")  # as `ray job submit` sets it
    args = parse_args(["--space", str(path)])
    assert cluster_address(args) == "10.0.0.2:6379"
    text = describe(load_search_spec(path, spec_overrides(args)), args)
    assert "cluster     existing Ray cluster at 10.0.0.2:6379 (RAY_ADDRESS)" in text
    # --address wins, and the resume command carries only what the user typed
    args = parse_args(["--space", str(path), "--address", "auto"])
    assert cluster_address(args) == "auto"
    assert "--address" not in resume_command(parse_args(["--space", str(path)]), "iou")
    monkeypatch.delenv("RAY_ADDRESS")
    assert cluster_address(parse_args(["--space", str(path)])) is None


def test_describe_existing_cluster_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "iou.yaml"
    path.write_text(SPACE.replace("  max_concurrent: 2\n", ""), encoding="utf-8")
    args = parse_args(["--space", str(path), "--address", "auto"])
    text = describe(load_search_spec(path, spec_overrides(args)), args)
    assert "existing Ray cluster at auto" in text
    assert "as many at a time as the resources allow" in text
    assert "finalists   none (the winner is the search's best single run)" in text
    assert "time budget none" in text
    args = parse_args(["--space", str(path), "--time-budget", "90m"])
    assert "time budget 1h30m: trials still running then are cut" in describe(
        load_search_spec(path), args)


# ---------------------------------------------------------------------------------------------
# data-parallel trials: the plan and the refusals before anything starts

DATA_PARALLEL = "  resources: {workers_per_trial: 2, cpus_per_worker: 1}\n"


def _data_parallel_space(tmp_path: Path, resources: str = DATA_PARALLEL) -> Path:
    path = tmp_path / "iou.yaml"
    path.write_text(SPACE.replace("  searcher:", resources + "  searcher:"), encoding="utf-8")
    return path


def test_describe_places_a_data_parallel_trial(tmp_path: Path) -> None:
    path = _data_parallel_space(tmp_path)
    args = parse_args(["--space", str(path)])
    lines = describe(load_search_spec(path, spec_overrides(args)), args).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  resources"))
    assert lines[at:at + 3] == [
        "  resources   a data-parallel job a trial: 1 driver (no CPU) + 2 workers x 1 CPU, "
        "0 GPU (gloo); global batch = per_device_train_batch_size x 2 x "
        "gradient_accumulation_steps, learning rate not scaled",
        "              workers: rank 0 reports metrics and checkpoints; the whole validation "
        "split is evaluated; retries restart all workers from the last checkpoint "
        "(experiment.max_failures)",
        "  retries     none (an errored trial stays errored)",
    ]
    assert "  trials      6, at most 2 at a time" in lines
    gpus = _data_parallel_space(tmp_path, "  resources: {workers_per_trial: 4, "
                                          "cpus_per_worker: 8, gpus_per_worker: 1}\n")
    text = describe(load_search_spec(gpus), args)
    assert "+ 4 workers x 8 CPU, 1 GPU (nccl); global batch = per_device_train_batch_size " \
           "x 4 x" in text
    one = _data_parallel_space(tmp_path, "  resources: {workers_per_trial: 1, "
                                         "gpus_per_worker: 0.5}\n")  # one worker: one process
    text = describe(load_search_spec(one), args)
    assert "  resources   1 CPU, 0.5 GPU per trial (2 trials share one GPU)\n  retries" in text


def _run_dry(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """`search/run.py ... --dry-run` (its `main`, in this process: the refusals come before Ray
    starts, and the one-line error path is the CLI's own)."""
    from search.run import main

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return run_main_in_process(main, [*argv, "--dry-run"], env)


@pytest.mark.parametrize("case", ["both forms", "flag with workers", "no dashboard"])
def test_data_parallel_refusals_are_one_line_exit_2(tmp_path: Path, case: str) -> None:
    storage = tmp_path / "results"
    if case == "both forms":
        path = _data_parallel_space(tmp_path, "  resources: {cpus_per_trial: 2, "
                                              "workers_per_trial: 2}\n")
        proc = _run_dry(["--space", str(path), "--storage", str(storage)])
        expected = (f"error: {path}: experiment.resources.cpus_per_trial: give either "
                    "cpus_per_trial / gpus_per_trial (one process a trial) or workers_per_trial "
                    "/ cpus_per_worker / gpus_per_worker (a data-parallel trial), not both")
    elif case == "flag with workers":
        path = _data_parallel_space(tmp_path)
        proc = _run_dry(["--space", str(path), "--storage", str(storage),
                         "--gpus-per-trial", "1"])
        expected = (f"error: {path}: experiment.resources.gpus_per_trial (from "
                    "--gpus-per-trial): give either cpus_per_trial / gpus_per_trial (one "
                    "process a trial) or workers_per_trial / cpus_per_worker / gpus_per_worker "
                    "(a data-parallel trial), not both")
    else:
        path = _data_parallel_space(tmp_path)
        proc = _run_dry(["--space", str(path), "--storage", str(storage), "--no-dashboard"])
        expected = (f"error: --no-dashboard: {path} runs data-parallel trials "
                    "(experiment.resources.workers_per_trial 2), which need the local Ray "
                    "cluster's dashboard: Ray Train frees a stopped trial's worker placement "
                    "group through the State API it serves, without it the next trial waits "
                    "forever (leave out --no-dashboard)")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [expected]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not storage.exists()


def test_no_dashboard_is_refused_only_for_workers_on_a_local_cluster(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    workers = load_search_spec(_data_parallel_space(tmp_path))
    check_dashboard(workers, parse_args(["--space", "s.yaml"]))  # the dashboard starts
    check_dashboard(workers, parse_args(["--space", "s.yaml", "--no-dashboard", "--address",
                                         "auto"]))  # a joined cluster's dashboard is its own
    one = load_search_spec(_data_parallel_space(tmp_path, ""))
    check_dashboard(one, parse_args(["--space", "s.yaml", "--no-dashboard"]))
    with pytest.raises(UserInputError, match=r"^--no-dashboard: "):
        check_dashboard(workers, parse_args(["--space", "s.yaml", "--no-dashboard"]))
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.2:6379")
    check_dashboard(workers, parse_args(["--space", "s.yaml", "--no-dashboard"]))
