"""A search whose space chooses the checkpoint, across two DETR families, for real (Ray, Tune,
Optuna, ASHA; `search/run.py`'s `main` in this process, on the tiny synthetic data).

The space lists a tiny D-FINE folder first and `builtin:tiny-shapes` (plain DETR) second, with a
learning rate relative to each one's recipe. The D-FINE folder's own `recipe.json` says 1e-9: it
cannot learn, so its mAP@.5 stays at 0 (measured: 0.0 at steps 8 and 16), while tiny-shapes at
its 2e-3 reaches 0.11-0.17. `points_to_evaluate` makes each be tried once, at its recipe's rate;
the second-listed wins, and the report, best_config.yaml and best_model/ must be the DETR
trial's. A second search lists the same checkpoints with a narrower factor range and starts
from the first one's trials (`--warm-start`): both fit, compared as factors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from search_helpers import (
    load_study,
    output_tail,
    ray_scope,
    read_trials_csv,
    run_main_in_process,
    session_cache,
    trial_dirs,
    write_space,
)

from search.run import main as run_main

pytestmark = pytest.mark.slow

LR = "training_args.learning_rate"
CKPT = "model.checkpoint"
SHAPES = "builtin:tiny-shapes"
FROZEN_LR = 1e-9


def frozen_d_fine(folder: Path) -> Path:
    """A tiny D-FINE `save_pretrained` folder whose recipe.json cannot learn."""
    from detr_core.config.run_config import ModelConfig
    from detr_core.data.coco import LabelMap
    from detr_core.model.build import build_image_processor, build_model

    cfg = ModelConfig(preset="tiny", family="d_fine", image_size=64)
    model = build_model(cfg, LabelMap(category_ids=(0, 1), names=("a", "b")), "giou", False)
    model.save_pretrained(folder)
    build_image_processor(cfg).save_pretrained(folder)
    (folder / "recipe.json").write_text(json.dumps({
        "learning_rate": FROZEN_LR, "backbone_lr_ratio": 1.0, "weight_decay": 0.0,
        "max_grad_norm": 0.1, "source": "test: a recipe that cannot learn"}))
    return folder


def space(path: Path, name: str, checkpoints: list[str], factors: list[float],
          num_samples: int, points: list[dict] | None = None) -> Path:
    write_space(path, name, {
        CKPT: {"choice": checkpoints},
        LR: {"loguniform": factors, "relative_to": "recipe"},
    }, num_samples=num_samples, max_concurrent=2, grace_period=8, max_t=16, epochs=4,
        logging_steps=8, metric="eval_map_50",
        extra_overrides={"training_args.optim": "schedule_free_adamw",
                         "training_args.lr_scheduler_type": "constant",
                         "training_args.warmup_steps": 0})
    doc = yaml.safe_load(path.read_text())
    doc["experiment"]["searcher"]["points_to_evaluate"] = points or []
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("families_search")
    d_fine = str(frozen_d_fine(root / "d_fine"))
    storage = root / "results"
    first = space(root / "first.yaml", "first", [d_fine, SHAPES], [0.5, 2.0], 2,
                  points=[{CKPT: d_fine, LR: 1.0}, {CKPT: SHAPES, LR: 1.0}])
    second = space(root / "second.yaml", "second", [d_fine, SHAPES], [0.75, 1.5], 1)
    common = ["--storage", storage, "--no-dashboard"]
    done: dict[str, object] = {"d_fine": d_fine, "storage": storage}
    with ray_scope(session_cache(tmp_path_factory)) as scope:
        done["first"] = run_main_in_process(run_main, ["--space", first, *common], scope.env)
        done["second"] = run_main_in_process(run_main, ["--space", second, *common,
                                                        "--warm-start", storage / "first"],
                                             scope.env)
        scope.assert_no_leftovers()
    return done


def test_each_checkpoint_is_tried_at_its_own_recipe_and_the_second_wins(runs: dict) -> None:
    assert runs["first"].returncode == 0, output_tail(runs["first"])
    first = runs["storage"] / "first"
    out = runs["first"].stdout
    assert "Recipe: each trial's model's own (model.checkpoint is searched)" in out
    assert f"  first       {CKPT}={runs['d_fine']}, {LR}=1" in out
    rows = {r[CKPT]: r for r in read_trials_csv(first)}
    assert set(rows) == {runs["d_fine"], SHAPES}
    assert float(rows[runs["d_fine"]][LR]) == pytest.approx(FROZEN_LR)  # 1.0 x its recipe
    assert float(rows[SHAPES][LR]) == pytest.approx(2e-3)               # 1.0 x tiny-shapes'
    assert float(rows[SHAPES]["best_eval_map_50"]) > float(rows[runs["d_fine"]]["best_eval_map_50"])
    assert all(float(r["cpu_s"]) > 0 for r in rows.values())

    best = yaml.safe_load((first / "best_config.yaml").read_text())
    assert best["model"]["checkpoint"] == SHAPES
    assert best["training_args"]["learning_rate"] == pytest.approx(2e-3)
    model = first / "best_model"
    assert json.loads((model / "config.json").read_text())["model_type"] == "detr"
    processor = json.loads((model / "preprocessor_config.json").read_text())
    assert processor["image_processor_type"].startswith("DetrImageProcessor")

    report = (first / "REPORT.md").read_text()
    assert "## By model" in report and f"`{runs['d_fine']}` | 1 |" in report
    assert f"`{SHAPES}` | 1 |" in report and "CPU-s" in report
    spec = yaml.safe_load((first / "search_spec.yaml").read_text())
    assert spec["recipe"]["per_trial"] == [LR]
    assert spec["space"][LR] == {"loguniform": [0.5, 2.0]}
    study = load_study(first, "first")  # Optuna saw the factors
    assert sorted(t.params[LR] for t in study.trials) == [1.0, 1.0]


def test_a_warm_start_between_spaces_listing_the_same_checkpoints(runs: dict) -> None:
    assert runs["second"].returncode == 0, output_tail(runs["second"])
    second = runs["storage"] / "second"
    assert "(first): 2 of 2 trial(s) taken" in runs["second"].stdout
    assert len(trial_dirs(second)) == 1
    rows = read_trials_csv(second)
    warm = {r[CKPT]: r for r in rows if r["origin"] == "warm-start"}
    assert float(warm[runs["d_fine"]][LR]) == pytest.approx(FROZEN_LR)
    assert float(warm[SHAPES][LR]) == pytest.approx(2e-3)
    study = load_study(second, "second")
    seeded = [t for t in study.trials if "warm_start_source" in t.user_attrs]
    assert sorted(t.params[LR] for t in seeded) == [1.0, 1.0]
    assert {t.params[CKPT] for t in seeded} == {runs["d_fine"], SHAPES}
    own = next(r for r in rows if r["origin"] == "search")
    factor = float(own[LR]) / (FROZEN_LR if own[CKPT] == runs["d_fine"] else 2e-3)
    assert 0.75 <= factor <= 1.5
