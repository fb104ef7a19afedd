"""A searched model with recipe-relative ranges (search.space.relative_ranges) and the points
a searcher tries first (search.space.spec). No Ray is started.

`model.checkpoint: {choice: [builtin:tiny-shapes, <an RT-DETR folder>]}` with
`training_args.learning_rate: {loguniform: [0.25, 2.0], relative_to: recipe}`: the space keeps
the factors, every candidate is checked when the file loads, and each trial trains with its
factor times its own checkpoint's recipe (2e-3 for tiny-shapes' recipe.json, 1e-4 for RT-DETR's
published one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from detr_core.files.errors import UserInputError
from search.lineage.warm_start import fit_trial
from search.results.importance import rung_points
from search.results.reading import TrialRecord
from search.running.cli import describe
from search.space.relative_ranges import absolute_values, factor_values
from search.space.spec import SearchSpec, enqueue_points, load_search_spec, to_tune_param_space
from search.trial.trainable import trial_run_config, trial_values

REPO = Path(__file__).resolve().parents[3]
IOU = REPO / "search_spaces" / "iou.yaml"
LR = "training_args.learning_rate"
CKPT = "model.checkpoint"


def space_file(folder: Path, space: dict[str, Any], searcher: dict[str, Any] | None = None,
               num_samples: int = 8) -> Path:
    """iou.yaml with `space` entries added and the searcher's settings replaced."""
    doc = yaml.safe_load(IOU.read_text(encoding="utf-8"))
    doc["space"].update(space)
    doc["experiment"]["num_samples"] = num_samples
    doc["experiment"]["searcher"] = {"seed": 0, "n_startup_trials": 2, **(searcher or {})}
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(UserInputError) as info:
        load_search_spec(path)
    text = str(info.value)
    assert "\n" not in text
    return text


@pytest.fixture
def two_models(tmp_path: Path, rt_detr_folder: Path) -> SearchSpec:
    return load_search_spec(space_file(
        tmp_path, {CKPT: {"choice": ["builtin:tiny-shapes", str(rt_detr_folder)]}}))


def test_the_space_keeps_factors_and_records_each_models_range(two_models: SearchSpec,
                                                               rt_detr_folder: Path) -> None:
    assert two_models.space[LR] == {"loguniform": [0.25, 2.0]}
    domain = to_tune_param_space(two_models)[LR]
    assert (domain.lower, domain.upper) == (0.25, 2.0)
    assert two_models.recipe["per_trial"] == [LR]
    rows = two_models.recipe["relative"][LR]["per_model"]
    assert [(r["recipe_value"], r["resolved"]) for r in rows] == [
        (0.002, {"loguniform": [5e-4, 4e-3]}), (1e-4, {"loguniform": [2.5e-5, 2e-4]})]
    assert rows[1]["model"] == f"checkpoint {rt_detr_folder}" and rows[1]["recipe"] == "RT-DETR"
    again = SearchSpec.from_yaml_dict(yaml.safe_load(yaml.safe_dump(two_models.to_yaml_dict())),
                                      "search_spec.yaml")
    assert again.recipe == two_models.recipe and again.space == two_models.space


def test_each_trial_trains_its_factor_times_its_own_recipe(two_models: SearchSpec,
                                                          rt_detr_folder: Path) -> None:
    spec = two_models
    shapes = trial_values(spec.space, {CKPT: "builtin:tiny-shapes", LR: 0.5}, spec.base,
                          spec.recipe)
    rt_detr = trial_values(spec.space, {CKPT: str(rt_detr_folder), LR: 0.5}, spec.base,
                           spec.recipe)
    assert shapes[LR] == pytest.approx(1e-3, rel=1e-12)
    assert rt_detr[LR] == pytest.approx(5e-5, rel=1e-12)
    run = trial_run_config(spec.base, spec.space, {CKPT: str(rt_detr_folder), LR: 2.0},
                           threads=1, recipe=spec.recipe)
    assert run["training_args"]["learning_rate"] == pytest.approx(2e-4, rel=1e-12)
    assert run["model"]["checkpoint"] == str(rt_detr_folder)
    with pytest.raises(ValueError, match="needs the base run"):
        trial_values(spec.space, {CKPT: str(rt_detr_folder), LR: 0.5}, None, spec.recipe)


def test_factors_come_back_from_absolute_values(two_models: SearchSpec,
                                                rt_detr_folder: Path) -> None:
    spec = two_models
    for checkpoint in ("builtin:tiny-shapes", str(rt_detr_folder)):
        for factor in (0.25, 0.7311, 2.0):
            trained = absolute_values({CKPT: checkpoint, LR: factor}, spec.base, spec.recipe)
            back = factor_values(trained, spec.base, [LR])
            assert back[LR] == factor and back[CKPT] == checkpoint


def test_importances_and_warm_start_compare_trials_as_factors(two_models: SearchSpec,
                                                              rt_detr_folder: Path) -> None:
    spec = two_models
    trained = trial_values(spec.space, {CKPT: str(rt_detr_folder), LR: 2.0, "iou_loss": "ciou",
                                        "training_args.warmup_steps": 0.1},
                           spec.base, spec.recipe)
    assert trained[LR] == pytest.approx(2e-4)
    record = TrialRecord(trial_id="t0", path=Path("/nowhere"), params=trained,
                         results=[{"step": spec.scheduler.grace_period, spec.metric: 0.5}],
                         status="finished")
    [(points, value)] = rung_points(spec, [record])
    assert points[LR] == 2.0 and value == 0.5
    # the same trial in a new search listing the same checkpoints: it fits, as its factor
    fitted, misfit = fit_trial(factor_values(trained, spec.base, [LR]), spec.base, spec.space,
                               spec.base, spec.space)
    assert misfit is None and fitted[LR] == 2.0 and fitted[CKPT] == str(rt_detr_folder)
    # as an absolute value (2e-4) it would be far outside the factors 0.25-2
    assert fit_trial(trained, spec.base, spec.space, spec.base, spec.space)[0] is None


def test_the_plan_names_each_checkpoints_range(two_models: SearchSpec,
                                               rt_detr_folder: Path) -> None:
    text = describe(two_models)
    assert "Recipe: each trial's model's own (model.checkpoint is searched)" in text
    assert (f"0.25-2 x each trial's recipe (checkpoint builtin:tiny-shapes: 0.002 -> "
            f"0.0005-0.004; checkpoint {rt_detr_folder}: 0.0001 -> 2.5e-05-0.0002)") in text, text


def test_a_candidate_model_without_a_recipe_is_refused_naming_it(tmp_path: Path) -> None:
    path = space_file(tmp_path, {"model": {"choice": [
        {"checkpoint": "builtin:tiny-shapes", "image_size": 96},
        {"preset": "tiny", "family": "d_fine", "image_size": 96}]}})
    assert refused(path) == (
        f"{path}: space.{LR}: relative_to: recipe: the searched model preset tiny, family "
        "d_fine has no recipe (no recipe.json in its folder, and its family has no published "
        "one); give absolute values, or list only models with a recipe")


# ---------------------------------------------------------------------------------------------
# points_to_evaluate


def test_points_are_checked_and_stated_in_the_spaces_terms(tmp_path: Path,
                                                           rt_detr_folder: Path) -> None:
    points = [{CKPT: str(rt_detr_folder), LR: 1.0}, {CKPT: "builtin:tiny-shapes"}]
    spec = load_search_spec(space_file(
        tmp_path, {CKPT: {"choice": ["builtin:tiny-shapes", str(rt_detr_folder)]}},
        {"points_to_evaluate": points}))
    assert spec.searcher.points_to_evaluate == points  # factors stay factors (per trial)
    assert f"  first       {CKPT}={rt_detr_folder}, {LR}=1" in describe(spec)
    # one model for the whole search: a factor is scaled when the space loads
    single = load_search_spec(space_file(tmp_path, {}, {"points_to_evaluate": [{LR: 0.5}]}))
    assert single.searcher.points_to_evaluate == [{LR: 2e-3}]  # 0.5 x tiny-shapes-d-fine's


@pytest.mark.parametrize(("points", "key", "words"), [
    ("ciou", "experiment.searcher.points_to_evaluate", "expected a list of mappings"),
    ([{}], "experiment.searcher.points_to_evaluate[0]", "expected a non-empty mapping"),
    ([{"seed": 3}], "experiment.searcher.points_to_evaluate[0].seed",
     "not a searched key of the space (searched: iou_loss, "),
    ([{"iou_loss": "xiou"}], "experiment.searcher.points_to_evaluate[0].iou_loss",
     "xiou is not a value of choice giou | diou | ciou"),
    ([{LR: 3.0}], f"experiment.searcher.points_to_evaluate[0].{LR}",
     "3 (a factor of the recipe's value) is not a value of"),
    ([{"iou_loss": "giou"}, {"iou_loss": "diou"}, {"iou_loss": "ciou"}],
     "experiment.searcher.points_to_evaluate", "3 points to evaluate, but the search runs 2"),
])
def test_bad_points_are_refused_in_one_line(tmp_path: Path, points: Any, key: str,
                                            words: str) -> None:
    path = space_file(tmp_path, {}, {"points_to_evaluate": points}, num_samples=2)
    text = refused(path)
    assert text.startswith(f"{path}: {key}: ") and words in text, text


def test_points_are_enqueued_once_and_asked_first() -> None:
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    points = [{"iou_loss": "ciou"}, {"iou_loss": "giou", "lr": 0.5}]
    assert enqueue_points(study, points) == 2
    assert enqueue_points(study, points) == 0  # a resumed or continued search: not again
    dists = {"iou_loss": optuna.distributions.CategoricalDistribution(["giou", "diou", "ciou"]),
             "lr": optuna.distributions.FloatDistribution(0.25, 2.0, log=True)}
    first, second = study.ask(dists), study.ask(dists)
    assert first.params["iou_loss"] == "ciou" and 0.25 <= first.params["lr"] <= 2.0
    assert second.params == {"iou_loss": "giou", "lr": 0.5}
