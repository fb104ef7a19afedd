"""Item: best_config.yaml and trials.csv hold exactly what the winner trained with.

Optuna cannot quantize a log-scale float and its integer/float steps come back as raw draws in
params.json (`0.2325`, `6`); the trainable rounds them (`search.trial.trainable`). The export
must use the same merge, or best_config.yaml would describe a run nobody trained. Checked on
a fake experiment folder whose params.json hold raw draws of a `qloguniform` and a `qrandint`
dimension: the exported config equals, field for field, the run config the trainable builds
from the same params.json, down to the `TrainingArguments` the Trainer gets.
"""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import yaml
from search_helpers import FAKE_SPEC, write_fake_experiment

from detr_core.config.run_config import run_config_from_dict
from detr_core.config.training_args import build_training_args
from search.results.export import export_experiment
from search.trial.trainable import trial_run_config, trial_values

SPACE = {
    "iou_loss": {"choice": ["giou", "diou"]},
    "training_args.max_grad_norm": {"qloguniform": [0.1, 1.0, 0.1]},
    "training_args.per_device_train_batch_size": {"qrandint": [4, 16, 4]},
    "seed": 3,
}
RAW = {  # what Optuna hands Tune, and Tune writes to params.json
    "aaaaa_00000": {"iou_loss": "giou", "training_args.max_grad_norm": 0.2325,
                    "training_args.per_device_train_batch_size": 6, "seed": 3},
    "aaaaa_00001": {"iou_loss": "diou", "training_args.max_grad_norm": 0.5600000000000001,
                    "training_args.per_device_train_batch_size": 15, "seed": 3},
}
ROUNDED = {
    "aaaaa_00000": (0.2, 8),  # 6 is half-way: round() goes to the even multiple (8)
    "aaaaa_00001": (0.6, 16),
}


def _experiment(tmp_path: Path) -> Path:
    spec = copy.deepcopy(FAKE_SPEC)
    spec["space"] = SPACE
    trials = {
        "aaaaa_00000": (RAW["aaaaa_00000"], 1500, [(300, 0.3), (600, 0.2)], False, False, True),
        "aaaaa_00001": (RAW["aaaaa_00001"], 1500, [(300, 0.25), (600, 0.1)], False, False, True),
    }
    return write_fake_experiment(tmp_path / "q", spec, trials)


def test_trial_values_round_to_q_and_add_fixed_values() -> None:
    values = trial_values(SPACE, {k: v for k, v in RAW["aaaaa_00000"].items() if k != "seed"})
    assert values == {"seed": 3, "iou_loss": "giou", "training_args.max_grad_norm": 0.2,
                      "training_args.per_device_train_batch_size": 8}
    assert isinstance(values["training_args.per_device_train_batch_size"], int)


def test_best_config_equals_the_winners_training_config_field_for_field(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    summary = export_experiment(exp, evaluate_winner=False)
    assert summary.winner_trial_id == "aaaaa_00001"
    exported = yaml.safe_load((exp / "best_config.yaml").read_text())

    # what the trainable builds from the winner's params.json (search.trial.trainable.train_detr),
    # with the thread count of a 1-CPU trial (the fake results report none: the spec's share)
    params = json.loads(next(exp.glob("train_detr_aaaaa_00001_*/params.json")).read_text())
    trained = trial_run_config(FAKE_SPEC["base"], SPACE, params, threads=1)
    assert exported == trained
    assert exported["num_threads"] == 1
    assert exported["training_args"]["max_grad_norm"] == 0.6
    assert exported["training_args"]["per_device_train_batch_size"] == 16

    # ... and down to the TrainingArguments the Trainer would get from each
    def trainer_args(raw: dict) -> dict:
        config = run_config_from_dict(raw)
        args = build_training_args(config.training_args, tmp_path / "out", config.seed)
        return args.to_dict()

    assert trainer_args(exported) == trainer_args(trained)


def test_trials_csv_and_report_show_the_rounded_values(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    export_experiment(exp, evaluate_winner=False)
    with open(exp / "trials.csv", newline="") as f:
        rows = {r["trial_id"]: r for r in csv.DictReader(f)}
    for trial_id, (grad_norm, batch) in ROUNDED.items():
        assert float(rows[trial_id]["training_args.max_grad_norm"]) == grad_norm
        assert rows[trial_id]["training_args.per_device_train_batch_size"] == str(batch)
    report = (exp / "REPORT.md").read_text()
    assert "| `training_args.max_grad_norm` | 0.6 |" in report
    assert "0.5600000000000001" not in report and "0.2325" not in report
