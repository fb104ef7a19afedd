""""What mattered" in REPORT.md: importances over every trial at the first rung (ASHA-stopped
ones included), the table, plots/importances.png, and the optuna-dashboard command."""

from __future__ import annotations

import math
from pathlib import Path

from search_helpers import FAKE_TRIALS, fake_params, write_fake_experiment

from search.results.export import export_experiment
from search.results.importance import MIN_TRIALS, optuna_distribution, value_at_step

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _lr_driven_trials(n: int) -> dict[str, tuple]:
    """n trials whose first-rung value is a function of the learning rate only."""
    trials = {}
    for i in range(n):
        lr = 10 ** (-5 + 2 * i / (n - 1))
        value = 0.1 + 0.1 * abs(math.log10(lr) + 3.5)
        iou = ("giou", "diou", "ciou")[i % 3]
        stopped = i % 2 == 1  # every other trial stopped by ASHA at the first rung
        points = [(300, value)] if stopped else [(300, value), (600, value - 0.05)]
        trials[f"ccccc_{i:05d}"] = (fake_params(iou, i % 2 == 0, lr, 0.1, 3), 600, points,
                                    stopped, False, False)
    return trials


def test_value_at_step_is_what_asha_records() -> None:
    results = [{"step": 250, "m": 0.5}, {"step": 500, "m": 0.4}, {"step": 750, "m": 0.3}]
    assert value_at_step(results, "m", 250) == 0.5
    assert value_at_step(results, "m", 300) == 0.4  # first result at or past the rung
    assert value_at_step(results, "m", 1000) is None


def test_optuna_distributions_hold_the_sampled_values() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    assert optuna_distribution({"choice": ["a", True]}) == CategoricalDistribution(["a", True])
    assert optuna_distribution({"qloguniform": [0.1, 1.0, 0.1]}) == FloatDistribution(
        0.1, 1.0, log=True)
    assert optuna_distribution({"qrandint": [4, 16, 4]}) == IntDistribution(4, 16, step=4)
    assert optuna_distribution({"lograndint": [1, 64]}) == IntDistribution(1, 64, log=True)


def test_stopped_trials_count_and_the_driving_parameter_ranks_first(tmp_path: Path) -> None:
    exp = write_fake_experiment(tmp_path / "lr", trials=_lr_driven_trials(12))
    summary = export_experiment(exp, evaluate_winner=False)
    imp = summary.importances
    assert imp is not None and imp.rung_step == 300
    assert imp.n_trials == 12  # the 6 ASHA-stopped trials included
    assert sum(s.startswith("stopped by ASHA") for s in (t.status for t in summary.trials)) == 6
    assert next(iter(imp.values)) == "training_args.learning_rate"
    assert imp.values["training_args.learning_rate"] > 0.5
    assert math.isclose(sum(imp.values.values()), 1.0, rel_tol=1e-6)
    assert set(imp.values) == set(summary.trials[0].params) - {"seed"}

    report = (exp / "REPORT.md").read_text()
    section = report[report.index("## What mattered"):report.index("## Winner")]
    assert "N = 12 trials, ASHA-stopped ones included" in section
    assert "fANOVA" in section and "step 300" in section
    first_row = next(ln for ln in section.splitlines() if ln.startswith("| `"))
    assert first_row.startswith("| `training_args.learning_rate` | 0.")
    assert "![importances](plots/importances.png)" in section
    png = (exp / "plots" / "importances.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5000
    assert f"optuna-dashboard {exp.resolve() / 'optuna_study.log'}" in section
    assert "pip install optuna-dashboard" in section


def test_too_few_trials_at_the_first_rung_gives_a_reason_not_numbers(tmp_path: Path) -> None:
    trials = {k: FAKE_TRIALS[k] for k in ("aaaaa_00001", "aaaaa_00005")}  # one has a value
    exp = write_fake_experiment(tmp_path / "few", trials=trials)
    (exp / "plots").mkdir()
    (exp / "plots" / "importances.png").write_bytes(b"stale")
    summary = export_experiment(exp, evaluate_winner=False)
    assert summary.importances is not None and summary.importances.values == {}
    assert summary.importances.n_trials == 1
    report = (exp / "REPORT.md").read_text()
    assert f"No importances: 1 trial(s) reached the first rung (step 300); at least " \
           f"{MIN_TRIALS} are needed" in report
    assert not (exp / "plots" / "importances.png").exists()  # no stale chart left
    assert "optuna-dashboard" in report  # the study can still be opened
