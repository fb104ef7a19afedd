"""`make run` against Hugging Face's own search, on the same Trainer, budget and machine.

    python benchmarks/hf_search.py                  # both searches + the HF winner's retraining
    python benchmarks/hf_search.py --smoke          # 2 tiny HF trials: does the integration run?
    python benchmarks/hf_search.py --render         # hf_search.md again from hf_search.json

The peer a user would reach for: `Trainer.hyperparameter_search(backend="ray", n_trials=8)`
(transformers 5.24, `integrations/integration_utils.py::run_hp_search_ray`): the Trainer is
pickled into every trial, `ray.tune.run` samples the `hp_space` at random, every trial trains
to the end (no scheduler unless given), the objective is `compute_objective(metrics)` at each
evaluation, and the best run is the one with the best *last* objective (`RAY_SCOPE=last`). It
returns hyperparameters only: the user then trains once more with them and keeps the final
weights (`load_best_model_at_end` is off by default). That is what this script does, on
detr_core's own `DetrTrainer`, data, model (the shipped space's checkpoint, IoU loss set by
`model_init`), metrics and the shipped search's budget (search_spaces/iou.yaml: its steps,
evaluations, 1 CPU per trial, 2 at a time, the same ranges); and `make run` beside it. Each
winner's configuration is then trained on `--seeds` seeds (5 by default), and the verdict
compares the means by the standard error of their difference.
HF's objective is `eval_map_50` (maximised), the detection metric an HF user would pick;
ours is the shipped space's (`eval_map_50` too since the shipped spaces dropped the extra
averaged weights; a space with `ema: {}` is run without them on HF's side, whose Trainer has
none). Both winners are scored on the test split by detr_core's evaluation.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "results" / "benchmarks"
COLUMNS = ("map_50", "recall", "precision", "map", "iou_mean", "missed", "num_gt")
#: HF's objective (its Trainer cannot evaluate averaged weights), maximised.
HF_OBJECTIVE = "eval_map_50"


def search_base(smoke: bool) -> dict[str, Any]:
    """The run config the shipped search trains (its base), as plain YAML values."""
    base = shipped_spec().base
    # HF casts each sampled value to the type of the TrainingArguments field it sets: an int
    # warmup_steps (the default's 100) would turn a sampled ratio 0.12 into 0 (field notes)
    base["training_args"]["warmup_steps"] = 0.0
    base["training_args"].update(metric_for_best_model=HF_OBJECTIVE, greater_is_better=True)
    base.pop("ema", None)  # no averaged weights in HF's Trainer
    base["num_threads"] = 1
    if smoke:
        base["data"]["synthetic"].update(num_train=16, num_val=8, num_test=8)
        base["training_args"].update(max_steps=4, logging_steps=2)
    return base


def budget_of(base: dict[str, Any]) -> dict[str, Any]:
    """What each trial trains, as the report states it: checkpoint, steps, evaluation every."""
    args = base.get("training_args") or {}
    return {"checkpoint": (base.get("model") or {}).get("checkpoint"),
            "max_steps": int(args.get("max_steps") or 0),
            "logging_steps": int(args.get("logging_steps") or 0)}


#: what the reports before `budget` in hf_search.json trained (plain DETR, 1,500 steps)
OLD_BUDGET = {"checkpoint": "builtin:tiny-shapes", "max_steps": 1500, "logging_steps": 250}


def build_trainer(base: dict[str, Any], output_dir: Path) -> tuple[Any, Any, Any]:
    """(DetrTrainer with model_init, prepared data, run config): detr_core's pieces as is."""
    from detr_core.config.run_config import run_config_from_dict
    from detr_core.config.training_args import build_training_args
    from detr_core.data.dataset import DetrCollator
    from detr_core.data.prepare import prepare_data
    from detr_core.model.build import build_image_processor, build_model, model_family
    from detr_core.train import build_datasets
    from detr_core.training.trainer import DetrTrainer, make_compute_metrics

    config = run_config_from_dict(base)
    data = prepare_data(config.data)
    datasets = build_datasets(config, data)
    processor = build_image_processor(config.model)

    def model_init(trial: dict[str, Any] | None = None) -> Any:
        iou = (trial or {}).get("iou_loss", config.iou_loss)
        return build_model(config.model, data.label_map, iou, config.freeze_backbone)

    args = build_training_args(config.training_args, output_dir, config.seed)
    trainer = DetrTrainer(
        model_init=model_init, args=args, data_collator=DetrCollator(processor),
        train_dataset=datasets["train"], eval_dataset=datasets["val"],
        processing_class=processor,
        compute_metrics=make_compute_metrics(data.label_map.names,
                                             config.evaluation.score_threshold,
                                             model_family(config.model)),
        backbone_lr_ratio=config.backbone_lr_ratio or 1.0)  # as detr_core's train_run
    return trainer, data, config


def shipped_spec() -> Any:
    """The shipped search (search_spaces/iou.yaml), loaded afresh (callers may edit it)."""
    from search.space.spec import load_search_spec

    return load_search_spec(ROOT / "search_spaces" / "iou.yaml")


def shipped_space() -> dict[str, Any]:
    """The shipped search's dimensions (search_spaces/iou.yaml), as its YAML gives them."""
    return shipped_spec().space


def shipped_hp_space() -> dict[str, Any]:
    """The shipped space as HF's `hp_space` wants it: Tune domains keyed by the
    TrainingArguments field (or `model_init` argument) they set."""
    from search.space.spec import to_tune_param_space

    space = to_tune_param_space(shipped_spec())
    return {key.removeprefix("training_args."): domain for key, domain in space.items()}


def hf_search(base: dict[str, Any], n_trials: int, folder: Path) -> dict[str, Any]:
    import ray

    trainer, _, _ = build_trainer(base, folder / "hf")

    def hp_space(_: Any) -> dict[str, Any]:
        return shipped_hp_space()

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        started = time.perf_counter()
        best = trainer.hyperparameter_search(
            hp_space=hp_space, compute_objective=lambda m: m[HF_OBJECTIVE],
            n_trials=n_trials, direction="maximize", backend="ray",
            resources_per_trial={"cpu": 1}, storage_path=str(folder / "ray"), verbose=0)
        search_wall = time.perf_counter() - started
    finally:
        ray.shutdown()
    print(json.dumps({"hf_search_wall_s": round(search_wall, 1),
                      "winner": best.hyperparameters, "objective": best.objective}), flush=True)
    # the user's next step: train once more with the winner's hyperparameters, keep the end
    started = time.perf_counter()
    test = hf_retrain(base, best.hyperparameters, base["seed"], folder / "hf_retrain")
    retrain_wall = time.perf_counter() - started
    return {"search_wall_s": round(search_wall, 1), "retrain_wall_s": round(retrain_wall, 1),
            "winner": {k: v for k, v in best.hyperparameters.items()},
            "objective": best.objective, "test": test}


def hf_retrain(base: dict[str, Any], hyperparameters: dict[str, Any], seed: int,
               folder: Path) -> dict[str, Any]:
    """HF's winner trained once more with `seed` as an HF user does (final weights kept);
    its test metrics. On a new Trainer: the searched one cannot train again (transformers
    5.24 + accelerate: `trainer.train()` after `hyperparameter_search` raises
    "AcceleratorState object has no attribute distributed_type", measured 2026-11-27)."""
    trainer, data, config = build_trainer({**base, "seed": seed}, folder)
    for key, value in hyperparameters.items():
        if hasattr(trainer.args, key):
            setattr(trainer.args, key, type(getattr(trainer.args, key))(value))
    trainer.model = trainer.call_model_init(hyperparameters)
    trainer.train()
    final = folder / "final"
    trainer.save_model(str(final))
    return test_metrics(final, config, data)


def retrain_ours(best_config: Path, seed: int, folder: Path) -> dict[str, Any]:
    """Our winner's `best_config.yaml` trained with `seed` (what `--final-seeds` does); the
    test metrics of its best step."""

    from detr_core.config.run_config import load_run_config
    from detr_core.train import train_run

    config = load_run_config(best_config).model_copy(update={"seed": seed})
    result = train_run(config, folder)
    return {k: (result.test_metrics or {}).get(k) for k in COLUMNS}


def test_metrics(model_dir: Path, config: Any, data: Any) -> dict[str, Any]:
    from detr_core.evaluate import evaluate_prepared

    metrics = evaluate_prepared(model_dir, config, data, "test")
    return {k: metrics.get(k) for k in COLUMNS}


def our_search(folder: Path) -> dict[str, Any]:
    """`make run`'s command, timed end to end; the winner's test metrics from its export."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "search/run.py", "--space", "search_spaces/iou.yaml", "--name", "ours",
         "--storage", str(folder), "--no-dashboard"], cwd=ROOT, capture_output=True, text=True,
        check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-3000:])
    exp = folder / "ours"
    metrics = json.loads((exp / "test_metrics.json").read_text())
    with (exp / "trials.csv").open(newline="") as rows:
        steps = sum(int(row["last_step"]) for row in csv.DictReader(rows))
    best = (exp / "best_config.yaml").read_text()
    return {"search_wall_s": round(wall, 1), "steps_trained": steps,
            "best_config": str(exp / "best_config.yaml"),
            "winner": searched_values(yaml.safe_load(best)),
            "winner_line": best.splitlines()[1].lstrip("# "),
            "test": {k: metrics.get(k) for k in COLUMNS}}


def shipped_objective() -> str:
    """The shipped space's metric and mode, as `metric (mode)`."""
    spec = shipped_spec()
    return f"{spec.metric} ({spec.mode})"


def searched_values(run_config: dict[str, Any]) -> dict[str, Any]:
    """The winner's value of every searched key (dotted in the space), read from its config."""
    values = {}
    for dotted in shipped_space():
        node: Any = run_config
        for part in dotted.split("."):
            node = node[part]
        values[dotted.removeprefix("training_args.")] = node
    return values


def _space_text(space: dict[str, Any]) -> str:
    return "; ".join(f"`{key}` {kind} {values}" for key, dist in space.items()
                     for kind, values in dist.items())


def _mean_std(rows: list[dict[str, Any]], key: str) -> tuple[float, float]:
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _row(label: str, wall: str, m: dict[str, Any]) -> str:
    return (f"| {label} | {wall} | {m['map_50']:.3f} | {m['recall']:.3f} | "
            f"{_num(m.get('precision'))} | {m['map']:.3f} | {m['missed']:.0f} / "
            f"{m['num_gt']:.0f} |")


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"


def difference_se(a: list[float], b: list[float]) -> float:
    """Standard error of the difference of two means (Welch: each side's own variance)."""
    return math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))


def verdict(report: dict[str, Any]) -> list[str]:
    """The issue's criterion, on the seeds both winners were trained with: ours better on test
    mAP@.5 by more than the standard error of the difference, or the same within it in <= 0.5x
    HF's wall time."""
    ours, hf = report["ours"], report["hf"]
    if "seeds" not in ours or "seeds" not in hf:
        return []
    o_mean, o_std = _mean_std(list(ours["seeds"].values()), "map_50")
    h_mean, h_std = _mean_std(list(hf["seeds"].values()), "map_50")
    se = difference_se([float(r["map_50"]) for r in ours["seeds"].values()],
                       [float(r["map_50"]) for r in hf["seeds"].values()])
    ratio = ours["search_wall_s"] / (hf["search_wall_s"] + hf["retrain_wall_s"])
    better = o_mean - h_mean > se
    same = abs(o_mean - h_mean) <= se
    lines = [f"Each winner's configuration on {len(ours['seeds'])} seeds "
             f"({', '.join(ours['seeds'])}), test mAP@.5 mean ± std: ours **{o_mean:.3f} ± "
             f"{o_std:.3f}**, HF **{h_mean:.3f} ± {h_std:.3f}** (difference "
             f"{o_mean - h_mean:+.3f}, its standard error {se:.3f}); recall ours "
             "{:.3f} ± {:.3f}, HF {:.3f} ± {:.3f}; precision ours {:.3f} ± {:.3f}, HF {:.3f} ± "
             "{:.3f}.".format(*_mean_std(list(ours["seeds"].values()), "recall"),
                              *_mean_std(list(hf["seeds"].values()), "recall"),
                              *_mean_std(list(ours["seeds"].values()), "precision"),
                              *_mean_std(list(hf["seeds"].values()), "precision")), ""]
    if better:
        lines.append(f"Criterion: ours better by more than the standard error of the "
                     f"difference: **met** (wall time {ratio:.2f}x HF's).")
    elif same:
        lines.append(f"Criterion: the same quality within the standard error of the difference "
                     f"in {ratio:.2f}x HF's wall time (target <= 0.50x): "
                     f"**{'met' if ratio <= 0.5 else 'not met'}**.")
    else:
        lines.append(f"Criterion: **not met**: HF's winner is better by more than the standard "
                     f"error of the difference; wall time {ratio:.2f}x HF's.")
    return [*lines, ""]


def render(report: dict[str, Any]) -> str:
    """The side-by-side table (Markdown) from the run's JSON."""
    ours, hf = report["ours"], report["hf"]
    trials = report.get("trials", 8)
    hf_total = hf["search_wall_s"] + hf["retrain_wall_s"]
    objective = report.get("hf_objective", "eval_loss_bbox (min)")
    ours_objective = (f" (`{report['our_objective']}`)" if report.get("our_objective")
                      else "")
    budget = report.get("budget", OLD_BUDGET)
    steps = budget["max_steps"]
    space = _space_text(report.get("space") or shipped_space())
    lines = [
        "# `make run` vs `Trainer.hyperparameter_search(backend=\"ray\")`", "",
        "`python benchmarks/hf_search.py` on this machine (2 CPU cores): both on the embedded "
        f"default (detr_core's DetrTrainer, `{budget['checkpoint']}`), {trials} trials each, "
        f"{steps:,} steps a trial at most, evaluation every {budget['logging_steps']} steps, 1 "
        "CPU per trial, 2 trials at "
        f"a time, over the shipped space (search_spaces/iou.yaml): {space}."
        f" Ours optimises the shipped objective{ours_objective}, HF `{objective}`. Both "
        "winners are scored on the test split by detr_core's evaluation "
        f"(score >= {report.get('score_threshold', 0.5)}). `missed`: ground truths that no "
        "confident box overlaps at all (recall "
        "counts a match at IoU >= 0.5 of the right class); precision: the matched share of the "
        "confident boxes.",
        "",
        "| | wall time (s) | test mAP@.5 | recall | precision | mAP | missed / GT |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        _row("`make run` (TPE + ASHA, best step exported)", f"{ours['search_wall_s']:.0f}",
             ours["test"]),
        _row("HF search (random, every trial to the end, best last value) + retraining its "
             "winner", f"{hf_total:.0f} ({hf['search_wall_s']:.0f} + "
             f"{hf['retrain_wall_s']:.0f})", hf["test"]), "",
        f"Wall time, ours / HF: {ours['search_wall_s'] / hf_total:.2f}x. Winners: ours: "
        f"{ours['winner']} ({ours.get('winner_line', '')}); HF: {hf['winner']} (last "
        f"{objective.split()[0]} {hf['objective']:.4f}). "
        f"Optimizer steps our trials trained: {ours['steps_trained']} (HF: {trials} x {steps:,} "
        f"= {trials * steps:,}, plus {steps:,} retraining).", "",
        *verdict(report)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--trials", type=int, default=None,
                        help="HF trials (default: the shipped search's num_samples)")
    parser.add_argument("--seeds", type=int, default=5,
                        help="train each winner's configuration with this many seeds (the "
                             "search's seed and the next ones) for the quality comparison")
    parser.add_argument("--render", action="store_true",
                        help="rewrite hf_search.md from the committed hf_search.json, no run")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads((OUT / "hf_search.json").read_text())
        (OUT / "hf_search.md").write_text(render(report))
        return 0
    if args.trials is None:
        args.trials = shipped_spec().num_samples
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with tempfile.TemporaryDirectory(prefix="hf-search-") as tmp:
        folder = Path(tmp)
        if args.smoke:
            result = hf_search(search_base(True), 2, folder)
            print(json.dumps(result, indent=2))
            return 0
        ours = our_search(folder)
        print(json.dumps({"ours": ours}), flush=True)
        base = search_base(False)
        hf = hf_search(base, args.trials, folder)
        print(json.dumps({"hf": hf}), flush=True)
        # each winner's configuration on more seeds: is a difference more than seed luck?
        first = int(base["seed"])
        ours["seeds"] = {str(first): ours["test"]}
        hf["seeds"] = {str(first): hf["test"]}
        for seed in range(first + 1, first + args.seeds):
            ours["seeds"][str(seed)] = retrain_ours(Path(ours["best_config"]), seed,
                                                    folder / f"ours-seed-{seed}")
            hf["seeds"][str(seed)] = hf_retrain(base, hf["winner"], seed,
                                                folder / f"hf-seed-{seed}")
            print(json.dumps({"seed": seed, "ours": ours["seeds"][str(seed)],
                              "hf": hf["seeds"][str(seed)]}), flush=True)
        ours.pop("best_config")
    report = {"ours": ours, "hf": hf, "trials": args.trials,
              "budget": budget_of(base), "space": shipped_space(),
              "score_threshold": base["evaluation"]["score_threshold"],
              "hf_objective": f"{HF_OBJECTIVE} (max)", "our_objective": shipped_objective()}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "hf_search.json").write_text(json.dumps(report, indent=2) + "\n")
    text = render(report)
    (OUT / "hf_search.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
