"""Export/report layer: trial statuses and every file `search/export.py` rebuilds.

The experiment folder is a fake written to disk with the files Ray Tune leaves per trial
(params.json, result.json lines, error.txt, checkpoint_*/ with checkpoint_meta.json), so the
export is checked on real files without starting Ray or training anything.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from search_helpers import (
    FAKE_SPEC,
    FAKE_TRIALS,
    fake_params,
    write_fake_experiment,
    write_fake_trial,
)

from search.export import main
from search.results.export import export_experiment
from search.results.plots import param_axis
from search.results.reading import read_results
from search.trial.status import is_early_stopped, status_category, trial_status

REPO_ROOT = Path(__file__).resolve().parents[3]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METRIC = "eval_loss_bbox"
EXPECTED_STATUS = {
    "aaaaa_00000": "completed",
    "aaaaa_00001": "completed",
    "aaaaa_00002": "stopped by ASHA at step 300",
    "aaaaa_00003": "errored",
    "aaaaa_00004": "interrupted at step 300",
    "aaaaa_00005": "not started",
}


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """A finished fake search `iou` with six trials in every possible state."""
    return write_fake_experiment(tmp_path / "results" / "iou")

def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------
# trial_status
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "errored", "max_t", "ended", "expected"),
    [
        ({"step": 900, "total_steps": 900}, False, 1500, None, "completed"),
        ({"step": 1500, "total_steps": 3000, "done": True}, False, 1500, None, "completed"),
        ({"step": 1600, "total_steps": 3000}, False, 1500, None, "completed"),
        ({"step": 300, "total_steps": 3000, "done": True}, False, 1500, None,
         "stopped by ASHA at step 300"),
        ({"step": 300, "total_steps": 3000}, False, 1500, True, "stopped by ASHA at step 300"),
        ({"step": 300, "total_steps": 3000}, False, 1500, None, "interrupted at step 300"),
        ({"step": 300, "total_steps": 3000, "done": True}, False, 1500, False,
         "interrupted at step 300"),
        ({"step": 900, "total_steps": 900}, True, 1500, None, "errored"),
        (None, True, 1500, None, "errored"),
        (None, False, 1500, None, "not started"),
        ({"training_iteration": 1}, False, 1500, None, "not started"),
        ({"step": 400, "total_steps": 500}, False, None, None, "interrupted at step 400"),
        ({"step": 500, "total_steps": 500}, False, None, None, "completed"),
    ],
)
def test_trial_status_rules(result, errored, max_t, ended, expected):
    assert trial_status(result, errored=errored, max_t=max_t, ended=ended) == expected


def test_is_early_stopped_uses_the_smaller_of_total_steps_and_max_t():
    assert is_early_stopped({"step": 300, "total_steps": 3000}, 1500)
    assert not is_early_stopped({"step": 1500, "total_steps": 3000}, 1500)
    assert is_early_stopped({"step": 800, "total_steps": 900}, 1500)
    assert not is_early_stopped({"step": 900, "total_steps": 900}, 1500)
    assert not is_early_stopped({"step": 900}, 900)  # no total_steps: max_t alone
    assert is_early_stopped({"step": 300}, 900)
    assert not is_early_stopped({"step": 10}, None)  # no budget known: never "early"


def test_status_category_drops_the_step():
    assert status_category("stopped by ASHA at step 300") == "stopped by ASHA"
    assert status_category("interrupted at step 12") == "interrupted"
    assert status_category("completed") == "completed"


# ---------------------------------------------------------------------------------------------
# export_experiment on the fake folder
# ---------------------------------------------------------------------------------------------


def test_best_config_merges_winner_values_into_base(experiment: Path):
    summary = export_experiment(experiment, evaluate_winner=False)

    assert summary.winner_trial_id == "aaaaa_00001"
    text = (experiment / "best_config.yaml").read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("aaaaa_00001" in line and "step 900" in line and "0.1" in line
               for line in header)
    config = yaml.safe_load(text)
    assert config["iou_loss"] == "ciou"
    assert config["freeze_backbone"] is True
    assert config["seed"] == 3  # fixed value of the space
    assert config["training_args"] == {"learning_rate": 3.2e-4, "warmup_steps": 0.15,
                                       "num_train_epochs": 4, "per_device_train_batch_size": 8}
    assert config["model"] == {"preset": "tiny", "image_size": 96}  # base kept
    assert config["data"] == FAKE_SPEC["base"]["data"]
    assert "training_args.learning_rate" not in config  # dotted keys are nested, not copied
    assert summary.best_config == config


def test_best_model_is_the_best_step_checkpoint(experiment: Path):
    summary = export_experiment(experiment, evaluate_winner=False)

    best_model = experiment / "best_model"
    assert summary.best_model_dir == best_model
    assert json.loads((best_model / "config.json").read_text()) == {
        "model_type": "detr", "trial": "aaaaa_00001", "step": 900}
    source = next(experiment.glob("train_detr_aaaaa_00001_*/checkpoint_000002/model"))
    assert (best_model / "model.safetensors").read_bytes() == \
        (source / "model.safetensors").read_bytes()
    assert summary.model_step == 900
    assert not list(experiment.glob(".best_model*"))  # no temp folders left behind


def test_checkpoint_of_the_best_step_beats_an_equal_value_elsewhere(tmp_path: Path):
    """Meta values may tie (a trainable that stores its best-so-far); the step decides."""
    from search.results.reading import TrialRecord
    from search.results.winner import select_checkpoint

    for index, step in enumerate((600, 900, 1200)):
        ckpt = tmp_path / f"checkpoint_{index:06d}"
        ckpt.mkdir()
        (ckpt / "checkpoint_meta.json").write_text(json.dumps(
            {"step": step, "metric": METRIC, "value": 0.1 if step >= 900 else 0.2,
             "model_dir": "."}))
    trial = TrialRecord(trial_id="t", path=tmp_path, params={}, results=[], status="completed",
                        best_value=0.1, best_step=900)
    chosen = select_checkpoint(trial, "min")
    assert chosen is not None and chosen[1]["step"] == 900
    trial.best_step = 300  # no checkpoint of that step: best meta value, newest on a tie
    chosen = select_checkpoint(trial, "min")
    assert chosen is not None and chosen[1]["step"] == 1200


def test_best_model_falls_back_to_best_kept_checkpoint(experiment: Path):
    winner_dir = next(experiment.glob("train_detr_aaaaa_00001_*"))
    for meta in winner_dir.glob("checkpoint_*/checkpoint_meta.json"):
        if json.loads(meta.read_text())["step"] == 900:
            (meta.parent / "checkpoint_meta.json").unlink()
    summary = export_experiment(experiment, evaluate_winner=False)

    # remaining checkpoints: 300 (0.28), 600 (0.15), 1200 (0.12) -> best value is step 1200
    assert summary.model_step == 1200
    assert json.loads((experiment / "best_model" / "config.json").read_text())["step"] == 1200
    assert "no checkpoint of step 900 was kept" in (experiment / "REPORT.md").read_text()


def test_best_model_replaced_when_winner_changes(experiment: Path):
    export_experiment(experiment, evaluate_winner=False)
    # a resumed search adds a better trial
    write_fake_trial(experiment, 6, "aaaaa_00006",
                (fake_params("giou", False, 1e-4, 0.0, 3), 900, [(300, 0.2), (600, 0.01)], False,
                 False, True))
    summary = export_experiment(experiment, evaluate_winner=False)

    assert summary.winner_trial_id == "aaaaa_00006"
    assert json.loads((experiment / "best_model" / "config.json").read_text()) == {
        "model_type": "detr", "trial": "aaaaa_00006", "step": 600}
    assert yaml.safe_load((experiment / "best_config.yaml").read_text())["iou_loss"] == "giou"


def test_trials_csv_rows_and_statuses(experiment: Path):
    export_experiment(experiment, evaluate_winner=False)
    rows = read_csv(experiment / "trials.csv")

    assert {r["trial_id"]: r["status"] for r in rows} == EXPECTED_STATUS
    # best first; the errored trial ranks behind every clean one despite its 0.05
    assert [r["trial_id"] for r in rows] == [
        "aaaaa_00001", "aaaaa_00000", "aaaaa_00004", "aaaaa_00002", "aaaaa_00003", "aaaaa_00005"]
    by_id = {r["trial_id"]: r for r in rows}
    winner = by_id["aaaaa_00001"]
    assert float(winner[f"best_{METRIC}"]) == pytest.approx(0.10)
    assert winner["best_step"] == "900"
    # beside the objective, the detection quality at the best step (not the last step's 0.88)
    assert float(winner["eval_map_50"]) == pytest.approx(0.90)
    assert winner["eval_recall"] == ""  # not reported by these trials: an empty cell
    assert "eval_loss_bbox" not in winner  # the objective has its best_ column
    assert winner["last_step"] == "1200"
    assert float(winner["wall_time_s"]) == pytest.approx(40.0)
    # no num_threads reported by these trials: the spec's CPUs per trial
    assert float(winner["cpu_s"]) == pytest.approx(40.0 * 1)
    assert float(winner["training_args.learning_rate"]) == pytest.approx(3.2e-4)
    assert winner["iou_loss"] == "ciou"
    assert by_id["aaaaa_00000"]["best_step"] == "600"
    assert by_id["aaaaa_00003"]["error"] == "ValueError: boxes1 must contain valid boxes (NaN)"
    assert by_id["aaaaa_00005"][f"best_{METRIC}"] == ""
    assert "seed" not in rows[0]  # fixed, not sampled


def test_plots_are_real_pngs(experiment: Path):
    summary = export_experiment(experiment, evaluate_winner=False)

    plots = experiment / "plots"
    expected = {"metric_curves.png", "train_loss_curves.png", "param_iou_loss.png",
                "param_freeze_backbone.png", "param_training_args.learning_rate.png",
                "param_training_args.warmup_steps.png",
                "param_training_args.num_train_epochs.png"}
    assert {p.name for p in plots.iterdir()} == expected | {"importances.png"}
    assert {p.name for p in summary.plots} == expected
    for png in plots.iterdir():
        data = png.read_bytes()
        assert data.startswith(PNG_SIGNATURE), png.name
        assert len(data) > 5000, png.name


def test_param_axis_kinds():
    from search.space.spec import SearchSpec

    spec = SearchSpec.from_yaml_dict(FAKE_SPEC, "search_spec.yaml")
    assert param_axis(spec, "training_args.learning_rate", [1e-4, 2e-4]) == ("log", [])
    assert param_axis(spec, "training_args.warmup_steps", [0.1]) == ("linear", [])
    assert param_axis(spec, "training_args.num_train_epochs", [2, 3]) == ("linear", [])
    assert param_axis(spec, "iou_loss", ["ciou"]) == ("categorical", ["giou", "diou", "ciou"])
    assert param_axis(spec, "freeze_backbone", [False]) == ("categorical", [True, False])
    assert param_axis(spec, "unknown", ["a", "b"]) == ("categorical", ["a", "b"])


def test_report_has_sorted_table_plots_winner_and_reproduce(experiment: Path):
    export_experiment(experiment, evaluate_winner=False)
    report = (experiment / "REPORT.md").read_text()

    assert report.startswith("# Search report: iou\n")
    assert f"`{METRIC}` (min" in report
    assert ("6 (2 completed, 1 stopped by ASHA, 1 errored, 1 interrupted, 1 not started)"
            in report)
    table = [line for line in report.splitlines() if line.startswith("| ") and "`aaaaa_" in line]
    order = [next(t for t in FAKE_TRIALS if t in line) for line in table[:6]]
    assert order == ["aaaaa_00001", "aaaaa_00000", "aaaaa_00004", "aaaaa_00002", "aaaaa_00003",
                     "aaaaa_00005"]
    # best value, best step, then map_50 / recall / precision at that step, then the last step
    assert table[0].startswith("| 1 | `aaaaa_00001` | completed | 0.1 | 900 | 0.9 |  |  | 1200 |")
    assert "| map_50 | recall | precision | last step |" in report
    links = [line[line.index("](") + 2:-1] for line in report.splitlines()
             if line.startswith("![")]
    assert "plots/metric_curves.png" in links
    assert "plots/train_loss_curves.png" in links
    assert "plots/param_training_args.learning_rate.png" in links
    for link in links:
        assert (experiment / link).is_file(), link
    winner = report[report.index("## Winner"):]
    assert "- Trial: `aaaaa_00001` (completed)" in winner
    assert "at step 900" in winner
    assert "| `training_args.learning_rate` | 0.00032 |" in winner
    assert "python -m detr_core.train --config" in report
    assert "best_config.yaml" in report[report.index("## How to reproduce"):]
    assert "## Test metrics" not in report  # not evaluated, none on disk
    assert "## Repeated seeds" not in report


TEST_METRICS = {"map": 0.5, "map_50": 0.8, "map_75": 0.45, "iou_mean": 0.7, "iou_std": 0.1,
                "center_error_px": 3.5, "center_error_px_std": 1.2, "missed": 4, "recall": 0.9,
                "num_gt": 40, "per_class_ap": {"circle": 0.6, "square": 0.4}}


@pytest.mark.slow
def test_current_test_metrics_are_reused_and_stale_ones_ignored(experiment: Path):
    export_experiment(experiment, evaluate_winner=False)
    metrics_path = experiment / "test_metrics.json"
    metrics_path.write_text(json.dumps(TEST_METRICS))

    # newer than best_model/: reused without evaluating (evaluate_winner=True would need data)
    summary = export_experiment(experiment, evaluate_winner=True)
    assert summary.test_metrics == TEST_METRICS
    assert summary.test_error is None
    report = (experiment / "REPORT.md").read_text()
    section = report[report.index("## Test metrics of the winner"):]
    assert "| map_50 | 0.8 |" in section
    assert "| center_error_px | 3.5 |" in section
    assert "| missed / num_gt | 4 / 40 |" in section
    assert "| circle | 0.6 |" in section

    # older than best_model/: belongs to another model, not shown
    old = (experiment / "best_model").stat().st_mtime - 100
    os.utime(metrics_path, (old, old))
    summary = export_experiment(experiment, evaluate_winner=False)
    assert summary.test_metrics is None
    assert "## Test metrics" not in (experiment / "REPORT.md").read_text()


def test_export_rebuilds_a_crashed_search_from_ray_state(experiment: Path):
    """No done flag in the files: Ray's experiment_state says how the trial ended."""
    states = []
    for trial_dir in experiment.iterdir():
        if not trial_dir.name.startswith("train_detr_"):
            continue
        trial_id = trial_dir.name.split("_")[2] + "_" + trial_dir.name.split("_")[3]
        status = {"aaaaa_00004": "TERMINATED", "aaaaa_00005": "ERROR"}.get(trial_id, "RUNNING")
        state = {"trial_id": trial_id, "status": status, "relative_logdir": trial_dir.name}
        states.append([json.dumps(state), "{}"])
    (experiment / "experiment_state-2026-11-26_01-00-00.json").write_text(
        json.dumps({"trial_data": states, "runner_data": {}}))
    export_experiment(experiment, evaluate_winner=False)

    statuses = {r["trial_id"]: r["status"] for r in read_csv(experiment / "trials.csv")}
    assert statuses["aaaaa_00004"] == "stopped by ASHA at step 300"
    assert statuses["aaaaa_00005"] == "errored"
    assert statuses["aaaaa_00002"] == "stopped by ASHA at step 300"  # done flag wins


def test_read_results_skips_torn_line_and_falls_back_to_progress_csv(tmp_path: Path):
    (tmp_path / "result.json").write_text('{"step": 1, "x": 0.5}\n{"step": 2, "x"')
    assert read_results(tmp_path) == [{"step": 1, "x": 0.5}]
    (tmp_path / "result.json").unlink()
    (tmp_path / "progress.csv").write_text("step,x,done,trial_id\n1,0.5,False,ab\n2,,True,ab\n")
    assert read_results(tmp_path) == [
        {"step": 1, "x": 0.5, "done": False, "trial_id": "ab"},
        {"step": 2, "x": None, "done": True, "trial_id": "ab"},
    ]


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_main_rejects_a_folder_that_is_not_an_experiment(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "search_spec.yaml" in err


def test_main_rejects_an_experiment_without_trials(tmp_path: Path, capsys):
    (tmp_path / "search_spec.yaml").write_text(yaml.safe_dump(FAKE_SPEC))
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "--no-evaluate"])
    assert exc.value.code == 2
    assert "no trials" in capsys.readouterr().err


@pytest.mark.slow
def test_script_runs_from_a_path(experiment: Path):
    """`python search/export.py results/<name>` works with the script folder first on sys.path."""
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "search" / "export.py"), str(experiment),
         "--no-evaluate"],
        capture_output=True, text=True, cwd=experiment.parent, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "winner aaaaa_00001" in proc.stdout
    assert (experiment / "REPORT.md").is_file()


@pytest.mark.slow
def test_evaluation_result_is_stored_and_failure_keeps_other_outputs(experiment: Path,
                                                                     monkeypatch, capsys):
    import search.results.winner as winner_eval

    calls = []

    def fake_evaluate(best_config, config_path, model_dir):
        calls.append((best_config["iou_loss"], config_path.name, model_dir.name))
        return TEST_METRICS | {"iou_std": float("nan")}

    monkeypatch.setattr(winner_eval, "evaluate_on_test", fake_evaluate)
    summary = export_experiment(experiment, evaluate_winner=True)
    assert calls == [("ciou", "best_config.yaml", "best_model")]
    stored = json.loads((experiment / "test_metrics.json").read_text())  # strict JSON: no NaN
    assert stored["iou_std"] is None and stored["map"] == 0.5
    assert summary.test_metrics == stored
    assert "| iou_std | n/a |" in (experiment / "REPORT.md").read_text()

    (experiment / "test_metrics.json").unlink()

    def broken_evaluate(best_config, config_path, model_dir):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(winner_eval, "evaluate_on_test", broken_evaluate)
    assert main([str(experiment)]) == 1
    assert "test evaluation" in capsys.readouterr().err
    report = (experiment / "REPORT.md").read_text()
    assert "Evaluation failed: RuntimeError: CUDA out of memory" in report
    assert (experiment / "best_config.yaml").is_file() and (experiment / "trials.csv").is_file()


def test_no_trial_with_the_metric_means_no_winner(tmp_path: Path):
    exp = tmp_path / "early"
    exp.mkdir()
    (exp / "search_spec.yaml").write_text(yaml.safe_dump(FAKE_SPEC))
    write_fake_trial(exp, 0, "bbbbb_00000", FAKE_TRIALS["aaaaa_00005"])
    assert main([str(exp), "--no-evaluate"]) == 1
    assert not (exp / "best_config.yaml").exists()
    assert "No trial reported `eval_loss_bbox` yet." in (exp / "REPORT.md").read_text()
    assert read_csv(exp / "trials.csv")[0]["status"] == "not started"


def test_a_trial_retried_past_a_failure_and_finished_is_not_errored(tmp_path: Path):
    """error.txt stays after a failure a retry got past (e.g. its node was lost)."""
    from search.results.reading import load_trial
    from search.space.spec import SearchSpec

    spec = SearchSpec.from_yaml_dict(FAKE_SPEC, "search_spec.yaml")
    params, total, points = FAKE_TRIALS["aaaaa_00001"][:3]
    retried = write_fake_trial(tmp_path, 0, "ccccc_00000", (params, total, points, True, True,
                                                            False))
    trial = load_trial(retried, spec, {})
    assert trial.status == "completed"
    assert trial.error == "ValueError: boxes1 must contain valid boxes (NaN)"
    failed = write_fake_trial(tmp_path, 1, "ccccc_00001", (params, total, points, False, True,
                                                           False))
    assert load_trial(failed, spec, {}).status == "errored"
