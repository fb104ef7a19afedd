"""End to end: `search/run.py` as a real subprocess (real Ray, Tune, Optuna, ASHA) on a tiny
synthetic dataset, then everything it leaves behind read back from disk like a user would:
trials.csv, best_config.yaml, best_model/, REPORT.md and its plots, the per-trial TensorBoard
events (with their HParams) and trial.log files, the Optuna study journal, the console output
(one line per trial event, nothing from Ray or the trials); `search/export.py` rebuilding it
all; `--dry-run`; bad space files refused before anything starts.

One search (module fixture) serves most tests: three trials, two at a time. ASHA's decisions
depend on which trial reaches a rung first, so the sampler seed is picked for a third trial that
is sure to be cut: seed 24 draws learning rates 3.0e-3, 3.7e-4 and then 3.0e-6, and the third
trial (started only after one of the others finished) barely moves from its initial loss by
the first rung, below the median of the values already recorded there.
"""

from __future__ import annotations

import filecmp
import json
import math
import re
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from search_helpers import (
    METRIC,
    RUN_SCRIPT,
    TERMINAL_STATUS_PREFIXES,
    free_port,
    load_study,
    optuna_trial_for,
    output_tail,
    ray_scope,
    read_results,
    read_trials_csv,
    session_cache,
    start_cli,
    tensorboard_scalars,
    trial_dirs,
    write_space,
)

pytestmark = pytest.mark.slow

NAME = "e2e"
NUM_SAMPLES = 3
LOGGING_STEPS = 2
MAX_STEPS = 8  # 32 images / batch 8 = 4 steps per epoch, 2 epochs
SPACE = {
    "iou_loss": {"choice": ["giou", "diou"]},
    "training_args.learning_rate": {"loguniform": [1.0e-6, 3.0e-3]},
}
SAMPLER_SEED = 24


@dataclass
class SearchRun:
    experiment_dir: Path
    returncode: int
    output: str
    port: int
    dashboard_status: int | None  # HTTP status of the dashboard API while the search ran
    leftovers: list[str]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_cache(tmp_path_factory)


def _probe_dashboard(url: str) -> int | None:
    """HTTP status of the dashboard's API without a token (401 when token auth is on)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with opener.open(f"{url}/api/version", timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    return None


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> SearchRun:
    """The one real search of this module, with the Ray dashboard on a free port."""
    root = tmp_path_factory.mktemp("e2e")
    space = write_space(root / "space.yaml", NAME, SPACE, num_samples=NUM_SAMPLES,
                        max_concurrent=2, grace_period=2, reduction_factor=2,
                        epochs=2, logging_steps=LOGGING_STEPS, seed=SAMPLER_SEED)
    port = free_port()
    log = root / "search.log"
    status = None
    with ray_scope(cache) as scope:
        proc = start_cli(RUN_SCRIPT, ["--space", space, "--storage", root / "results",
                                      "--dashboard-port", port], scope.env, log)
        try:
            deadline = time.monotonic() + 420
            while proc.poll() is None and time.monotonic() < deadline:
                match = re.search(r"Ray dashboard: (\S+)", log.read_text(errors="replace"))
                if match and status is None:
                    status = _probe_dashboard(match.group(1))
                time.sleep(0.5)
            returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        left = scope.wait_gone(30)
        leftovers = scope.kill_all() if left else []
    return SearchRun(root / "results" / NAME, returncode, log.read_text(errors="replace"),
                     port, status, leftovers)


def _finished(search: SearchRun) -> SearchRun:
    assert search.returncode == 0, output_tail(search.output)
    return search


def test_search_exits_0_and_leaves_no_ray_process(search: SearchRun) -> None:
    _finished(search)
    assert f"done: {search.experiment_dir}/REPORT.md" in search.output
    assert search.leftovers == []


def test_dashboard_line_names_localhost_and_token_file(search: SearchRun) -> None:
    """The printed login line: 127.0.0.1 and the chosen port, and where the token is."""
    from search.running.driver import auth_token_path

    _finished(search)
    lines = [ln for ln in search.output.splitlines() if ln.startswith("Ray dashboard:")]
    assert len(lines) == 1, output_tail(search.output)
    line = lines[0]
    assert f"http://127.0.0.1:{search.port}" in line
    assert "token" in line and str(auth_token_path()) in line
    assert auth_token_path().is_file()
    # The dashboard was up at that address and refused an unauthenticated API call.
    assert search.dashboard_status == 401


EVENT = re.compile(r"^\[\s*\d+:\d\d\] trial (\w+) (started|passed rung|stopped by ASHA|"
                   r"finished|errored|failed|restarted|cut by time budget)")
# what Ray, Tune and the trials print when they are not kept off the console
NOISE = ("Configuration for experiment", "Trial status", "/tmp/ray", "Loading weights",
         "Writing model shards", "{'loss'", "'eval_loss'", "(train_detr pid=", "Traceback",
         "INFO", "Warning", "╭")


def test_console_shows_the_plan_one_line_per_trial_event_and_where_outputs_are(
        search: SearchRun) -> None:
    exp = _finished(search).experiment_dir
    lines = search.output.splitlines()
    assert lines[0].startswith(f"Search '{NAME}' from ")
    for noise in NOISE:
        assert not [ln for ln in lines if noise in ln], (noise, output_tail(search.output))
    events = [EVENT.match(ln).groups() for ln in lines if EVENT.match(ln)]
    rows = {r["trial_id"]: r for r in read_trials_csv(exp)}
    for trial_id, row in rows.items():
        kinds = [kind for tid, kind in events if tid == trial_id]
        assert kinds[0] == "started" and kinds.count("started") == 1, kinds
        last = "finished" if row["status"] == "completed" else "stopped by ASHA"
        assert kinds[-1] == last and kinds.count(last) == 1, (kinds, row["status"])
        rungs = [2, 4]  # rungs below max_t 8 that this trial passed (ASHA: 2, 4, 8)
        passed = [r for r in rungs if r < int(row["last_step"])]
        assert kinds.count("passed rung") == len(passed), kinds
    stopped_line = next(ln for ln in lines if "stopped by ASHA at step" in ln)
    assert re.search(rf"stopped by ASHA at step \d+: {METRIC} \d", stopped_line)
    tail = "\n".join(lines[-9:])
    assert f"report:      {exp}/REPORT.md" in tail
    assert f"best config: {exp}/best_config.yaml" in tail
    assert f"tensorboard --logdir {exp}" in tail
    # the plan (one line each), 1 dashboard line, the events, the summary: nothing else
    plan = lines.index(next(ln for ln in lines if ln.startswith("Ray dashboard:")))
    summary_start = lines.index(next(ln for ln in lines if ln.startswith(f"{NAME}: ")))
    assert len(lines) - summary_start <= 10
    assert len(events) == summary_start - plan - 1, lines[plan:summary_start]
    assert len(lines) <= 45, len(lines)


def test_each_trial_output_is_in_its_own_log_file(search: SearchRun) -> None:
    exp = _finished(search).experiment_dir
    for trial in trial_dirs(exp):
        log = (trial / "trial.log").read_text(errors="replace").splitlines()
        # the Trainer's own log line of each evaluation (copied at each checkpoint and at the
        # trial's end: an ASHA-stopped trial may lack the evaluations after its last best)
        evals = [ln for ln in log if ln.startswith("{'eval_loss'")]
        assert 1 <= len(evals) <= len(read_results(trial)), (trial.name, log[-5:])
        assert f"'{METRIC}'" in evals[0]


def test_trial_event_files_carry_the_hyperparameters(search: SearchRun) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    exp = _finished(search).experiment_dir
    for trial in trial_dirs(exp):
        params = json.loads((trial / "params.json").read_text())
        found = {}
        for events in trial.glob("events.out.tfevents.*"):
            acc = EventAccumulator(str(events))
            acc.Reload()
            content = acc.PluginTagToContent("hparams")
            if "_hparams_/session_start_info" in content:
                start = plugin_data_pb2.HParamsPluginData.FromString(
                    content["_hparams_/session_start_info"]).session_start_info
                found = {k: v.string_value or v.number_value for k, v in start.hparams.items()}
        assert found.keys() == params.keys(), trial.name
        assert found["iou_loss"] == params["iou_loss"]
        assert math.isclose(found["training_args.learning_rate"],
                            params["training_args.learning_rate"], rel_tol=1e-9)


def test_report_says_what_mattered_over_every_trial(search: SearchRun) -> None:
    exp = _finished(search).experiment_dir
    report = (exp / "REPORT.md").read_text()
    section = report[report.index("## What mattered"):report.index("## Winner")]
    assert f"N = {NUM_SAMPLES} trials, ASHA-stopped ones included" in section
    table = [ln for ln in section.splitlines() if ln.startswith("| `")]
    assert {ln.split("`")[1] for ln in table} == set(SPACE)
    assert (exp / "plots" / "importances.png").read_bytes()[:4] == b"\x89PNG"
    assert f"optuna-dashboard {exp}/optuna_study.log" in section


def test_trials_csv_has_one_terminal_row_per_trial(search: SearchRun) -> None:
    exp = _finished(search).experiment_dir
    rows = read_trials_csv(exp)
    dirs = trial_dirs(exp)
    assert len(rows) == len(dirs) == NUM_SAMPLES
    assert {r["trial_id"] for r in rows} == {read_results(d)[0]["trial_id"] for d in dirs}
    for row in rows:
        assert row["status"] == "completed" or re.fullmatch(
            r"stopped by ASHA at step \d+", row["status"]), row
        assert row["status"].startswith(TERMINAL_STATUS_PREFIXES)
        assert row["error"] == ""
    statuses = [r["status"] for r in rows]
    assert "completed" in statuses
    # grace_period 2: the last trial, worse than the recorded ones at a rung, is cut there
    stopped = [r for r in rows if r["status"].startswith("stopped by ASHA")]
    assert stopped, statuses
    for row in stopped:
        step = int(row["status"].rsplit(" ", 1)[1])
        assert step < MAX_STEPS and step % LOGGING_STEPS == 0
        assert int(row["last_step"]) == step
    # best first: rank order of the metric
    values = [float(r[f"best_{METRIC}"]) for r in rows]
    assert values == sorted(values)


def test_best_config_is_a_complete_run_config_of_the_winner(search: SearchRun) -> None:
    from detr_core.config.run_config import load_run_config, run_config_from_dict

    exp = _finished(search).experiment_dir
    winner = read_trials_csv(exp)[0]
    raw = yaml.safe_load((exp / "best_config.yaml").read_text())
    config = run_config_from_dict(raw, source="best_config.yaml")
    assert load_run_config(exp / "best_config.yaml") == config
    assert config.iou_loss == winner["iou_loss"]
    assert config.training_args["learning_rate"] == float(winner["training_args.learning_rate"])
    # the base overrides of the space file are in it too
    assert raw["data"]["synthetic"]["num_train"] == 32
    assert raw["model"]["image_size"] == 64
    assert raw["training_args"]["logging_steps"] == LOGGING_STEPS
    assert winner["trial_id"] in (exp / "best_config.yaml").read_text().splitlines()[1]


def test_best_model_is_the_winners_best_step_and_loads(search: SearchRun) -> None:
    from transformers import DetrForObjectDetection

    exp = _finished(search).experiment_dir
    winner = read_trials_csv(exp)[0]
    source = json.loads((exp / "best_model" / "export_source.json").read_text())
    assert source["trial_id"] == winner["trial_id"]
    assert source["step"] == int(winner["best_step"])
    assert math.isclose(source["value"], float(winner[f"best_{METRIC}"]))
    model = DetrForObjectDetection.from_pretrained(exp / "best_model")
    assert model.config.d_model > 0


def test_report_has_the_table_and_png_plots(search: SearchRun) -> None:
    exp = _finished(search).experiment_dir
    report = (exp / "REPORT.md").read_text()
    assert f"# Search report: {NAME}" in report
    for row in read_trials_csv(exp):
        assert f"`{row['trial_id']}` | {row['status']} |" in report
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert "plots/metric_curves.png" in images
    assert len(images) >= 2 + len(SPACE)  # metric, train loss, one per searched key
    for image in images:
        assert (exp / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image
    assert (exp / "test_metrics.json").is_file()
    assert "## Test metrics of the winner" in report
    # the winner's detections on test images beside their ground truth, and mAP@.5 / recall
    assert "best_model/test_detections.png" in images
    section = report[report.index("## Test metrics of the winner"):]
    assert section.index("| map_50 |") < section.index("| recall |") < section.index("| map |")


def test_tensorboard_has_the_metric_at_every_logging_step(search: SearchRun) -> None:
    exp = _finished(search).experiment_dir
    for trial in trial_dirs(exp):
        results = read_results(trial)
        steps = [r["step"] for r in results]
        last = steps[-1]
        assert steps == list(range(LOGGING_STEPS, last + 1, LOGGING_STEPS)), trial.name
        assert [r["training_iteration"] for r in results] == list(range(1, len(results) + 1))
        # Tune's TensorBoard logger: one point per reported result, x = training_iteration
        metric = tensorboard_scalars(trial, f"ray/tune/{METRIC}")
        step = tensorboard_scalars(trial, "ray/tune/step")
        assert [s for s, _ in metric] == [r["training_iteration"] for r in results], trial.name
        assert [int(v) for _, v in step] == steps, trial.name
        for (_, value), result in zip(metric, results, strict=True):
            assert math.isclose(value, result[METRIC], rel_tol=1e-6)


def test_optuna_study_has_pruned_and_complete_trials(search: SearchRun) -> None:
    from optuna.trial import TrialState

    exp = _finished(search).experiment_dir
    study = load_study(exp, NAME)
    assert len(study.trials) == NUM_SAMPLES
    rows = {r["trial_id"]: r for r in read_trials_csv(exp)}
    seen = set()
    for trial in trial_dirs(exp):
        results = read_results(trial)
        row = rows[results[0]["trial_id"]]
        ot = optuna_trial_for(study, json.loads((trial / "params.json").read_text()))
        seen.add(ot.number)
        # every evaluation reached Optuna as an intermediate value keyed by optimizer step
        assert ot.intermediate_values == {r["step"]: r[METRIC] for r in results}
        if row["status"] == "completed":
            assert ot.state == TrialState.COMPLETE
            assert ot.value == float(row[f"best_{METRIC}"])
        else:
            assert ot.state == TrialState.PRUNED, row
            last = max(ot.intermediate_values)
            assert last == int(row["last_step"])
            assert ot.value == ot.intermediate_values[last]  # Optuna's value of a pruned trial
    assert len(seen) == NUM_SAMPLES
    assert study.best_value == float(read_trials_csv(exp)[0][f"best_{METRIC}"])


def test_export_rebuilds_every_output(search: SearchRun, tmp_path: Path) -> None:
    """`search/export.py`'s `main`, in-process (test_export.py runs the script itself)."""
    import ray

    from search.export import main

    exp = _finished(search).experiment_dir
    copy = tmp_path / NAME
    shutil.copytree(exp, copy)
    originals = {name: (copy / name).read_text() for name in ("trials.csv", "best_config.yaml")}
    removed = ["REPORT.md", "trials.csv", "best_config.yaml", "test_metrics.json"]
    for name in removed:
        (copy / name).unlink()
    shutil.rmtree(copy / "best_model")
    shutil.rmtree(copy / "plots")
    assert main([str(copy)]) == 0
    assert not ray.is_initialized()  # the export never starts Ray
    for name in removed:
        assert (copy / name).is_file(), name
    assert (copy / "trials.csv").read_text() == originals["trials.csv"]
    assert (copy / "best_config.yaml").read_text().replace(str(copy), str(exp)) == \
        originals["best_config.yaml"]
    assert filecmp.cmp(copy / "best_model" / "model.safetensors",
                       exp / "best_model" / "model.safetensors", shallow=False)
    report = (copy / "REPORT.md").read_text()
    old = (exp / "REPORT.md").read_text()
    # same report apart from the generation line and the folder it names
    strip = [ln.replace(str(copy), "X").replace(str(exp), "X") for ln in report.splitlines()
             if not ln.startswith("Generated ")]
    strip_old = [ln.replace(str(exp), "X") for ln in old.splitlines()
                 if not ln.startswith("Generated ")]
    assert strip == strip_old
    assert sorted(p.name for p in (copy / "plots").iterdir()) == \
        sorted(p.name for p in (exp / "plots").iterdir())


def test_dry_run_prints_the_space_and_starts_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In-process (`search.run.main`): what is printed, and that neither Ray nor a folder was
    started."""
    import ray

    from search.run import main

    space = write_space(tmp_path / "space.yaml", "dry", SPACE, num_samples=5)
    storage = tmp_path / "results"
    capsys.readouterr()
    assert main(["--space", str(space), "--storage", str(storage), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert not ray.is_initialized()
    assert not storage.exists()
    assert "Search 'dry'" in out and "trials      5" in out
    assert "iou_loss" in out and "choice giou | diou" in out
    assert "training_args.learning_rate" in out and "loguniform [1e-06, 0.003]" in out
    assert "rungs at steps 2, 4, 8" in out


BAD_SPACES = {
    # file name: (space file text, key the error must name)
    "unknown_key.yaml": (
        "space:\n  training_args.learning_rat: {loguniform: [1.0e-5, 1.0e-3]}\n",
        "space.training_args.learning_rat"),
    "bad_distribution.yaml": (
        "space:\n  training_args.learning_rate: {lognormal: [1.0e-5, 1.0e-3]}\n",
        "space.training_args.learning_rate"),
    "bad_bound.yaml": (
        "space:\n  training_args.learning_rate: {loguniform: [1.0e-3, 1.0e-5]}\n",
        "space.training_args.learning_rate"),
    "bad_choice_type.yaml": (
        "space:\n  training_args.num_train_epochs: {choice: [2, three]}\n",
        "space.training_args.num_train_epochs"),
}


def test_bad_space_files_exit_2_with_one_line_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In-process (`search.run.main`): a subprocess would prove nothing more than the exit code
    and the one stderr line, which `SystemExit` and capsys show here too."""
    import ray

    from search.run import main

    storage = tmp_path / "results"
    for index, (file_name, (text, key)) in enumerate(BAD_SPACES.items()):
        path = tmp_path / file_name
        path.write_text(f"experiment: {{name: bad{index}}}\n{text}")
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(["--space", str(path), "--storage", str(storage)])
        out, err = capsys.readouterr()
        assert info.value.code == 2, (file_name, out, err)
        assert out == "", out
        lines = err.splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"error: {path}: {key}: "), lines[0]
        assert "Traceback" not in err
        assert not ray.is_initialized()  # Ray never started
    assert not storage.exists()
