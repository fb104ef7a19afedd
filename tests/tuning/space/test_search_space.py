"""Search-space files (search.space.spec and the modules it uses) written to disk, parsed,
validated, turned into Tune.

No Ray cluster is started: Tune domains and OptunaSearch are used as plain objects.
"""

from __future__ import annotations

import json
import math
import pickle
import textwrap
from pathlib import Path

import pytest
import yaml

from detr_core.config.run_config import (
    load_default_run_config,
    run_config_from_dict,
    validated,
)
from detr_core.files.errors import UserInputError
from search.space.budget import asha_rungs, default_max_concurrent, estimate_max_steps
from search.space.distributions import quantize_params
from search.space.spec import (
    REPORTED_METRICS,
    ResourceSpec,
    SearchSpec,
    load_search_spec,
    to_tune_param_space,
)
from search.trial.trainable import trial_run_config

REPO = Path(__file__).resolve().parents[3]

FULL = """\
experiment:
  name: iou
  metric: eval_loss_bbox
  mode: min
  num_samples: 8
  max_concurrent: 2
  scheduler:
    grace_period: 300
    reduction_factor: 3
    max_t: 1500
  searcher:
    seed: 0
    n_startup_trials: 4
  resources: {cpus_per_trial: 1, gpus_per_trial: 0.5}
  max_failures: 1
base_overrides:
  training_args.num_train_epochs: 3
  data: {synthetic: {num_train: 200}}
space:
  iou_loss: {choice: [giou, diou, ciou]}
  training_args.learning_rate: {loguniform: [1e-5, 1.0e-3]}
  training_args.warmup_steps: {uniform: [0.0, 0.2]}
  training_args.num_train_epochs: {randint: [2, 6]}
  training_args.per_device_train_batch_size: {qrandint: [4, 16, 4]}
  training_args.weight_decay: {quniform: [0.0, 0.1, 0.01]}
  training_args.max_grad_norm: {qloguniform: [0.1, 1.0, 0.1]}
  training_args.logging_steps: {lograndint: [10, 50]}
  freeze_backbone: {choice: [true, false]}
  seed: 3
"""

# Domains of FULL as (inclusive low, inclusive high) and the values that must be integers.
BOUNDS = {
    "training_args.learning_rate": (1e-5, 1e-3),
    "training_args.warmup_steps": (0.0, 0.2),
    "training_args.num_train_epochs": (2, 6),
    "training_args.per_device_train_batch_size": (4, 16),
    "training_args.weight_decay": (0.0, 0.1),
    "training_args.max_grad_norm": (0.1, 1.0),
    "training_args.logging_steps": (10, 50),
}
INTEGER_KEYS = {
    "training_args.num_train_epochs",
    "training_args.per_device_train_batch_size",
    "training_args.logging_steps",
}


def write(folder: Path, text_or_doc: str | dict, name: str = "space.yaml") -> Path:
    """Write a space file (YAML text, or a dict dumped as YAML) and return its path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    text = text_or_doc if isinstance(text_or_doc, str) else yaml.safe_dump(text_or_doc)
    path.write_text(text, encoding="utf-8")
    return path


def minimal(**extra: object) -> dict:
    """Smallest valid space document, plus top-level sections in `extra`."""
    doc: dict = {"space": {"iou_loss": {"choice": ["giou", "ciou"]}}}
    doc.update(extra)
    return doc


# ---------------------------------------------------------------------------------------------
# a full valid file


@pytest.fixture(scope="module")
def full_spec(tmp_path_factory: pytest.TempPathFactory) -> SearchSpec:
    return load_search_spec(write(tmp_path_factory.mktemp("full"), FULL))


def test_full_file_gives_the_spec(full_spec: SearchSpec) -> None:
    spec = full_spec
    assert (spec.name, spec.metric, spec.mode) == ("iou", "eval_loss_bbox", "min")
    assert (spec.num_samples, spec.max_concurrent, spec.max_failures) == (8, 2, 1)
    assert (spec.scheduler.grace_period, spec.scheduler.reduction_factor,
            spec.scheduler.max_t) == (300, 3.0, 1500)
    assert (spec.searcher.seed, spec.searcher.n_startup_trials) == (0, 4)
    assert (spec.resources.cpus_per_trial, spec.resources.gpus_per_trial) == (1.0, 0.5)
    assert spec.searched_keys()[0] == "iou_loss" and len(spec.searched_keys()) == 9
    assert spec.fixed_values() == {"seed": 3}
    assert spec.log_scale_keys() == {"training_args.learning_rate",
                                     "training_args.max_grad_norm",
                                     "training_args.logging_steps"}
    assert spec.space["training_args.learning_rate"] == {"loguniform": [1e-5, 1e-3]}
    assert spec.base_source == "embedded default"


def test_base_is_complete_with_overrides_applied(full_spec: SearchSpec) -> None:
    base = full_spec.base
    assert base["training_args"]["num_train_epochs"] == 3
    assert base["data"]["synthetic"]["num_train"] == 200
    assert base["data"]["synthetic"]["num_val"] == 64  # nested override merged, not replaced
    run_config_from_dict(base)  # complete on its own


def test_to_yaml_dict_has_the_flat_experiment(full_spec: SearchSpec) -> None:
    doc = full_spec.to_yaml_dict()
    assert doc["name"] == "iou"
    assert doc["experiment"] == {
        "metric": "eval_loss_bbox", "mode": "min", "num_samples": 8, "max_concurrent": 2,
        "max_t": 1500, "grace_period": 300, "reduction_factor": 3.0, "searcher_seed": 0,
        "n_startup_trials": 4, "points_to_evaluate": [], "sampler": "tpe", "sampler_options": {},
        "cpus_per_trial": 1.0, "gpus_per_trial": 0.5, "workers_per_trial": 1,
        "cpus_per_worker": 1.0, "gpus_per_worker": 0.5,
        "max_failures": 1, "finalists_top": 0, "finalists_seeds": 0,
    }
    assert doc["space"] == full_spec.space and doc["base"] == full_spec.base
    assert yaml.safe_load(yaml.safe_dump(doc)) == doc  # plain YAML types only


def test_tune_param_space_types_and_bounds(full_spec: SearchSpec) -> None:
    from ray.tune.search.sample import Categorical, Float, Integer, LogUniform, Quantized

    params = to_tune_param_space(full_spec)
    assert list(params) == list(full_spec.space)  # flat, dotted keys unchanged
    assert params["seed"] == 3
    assert isinstance(params["iou_loss"], Categorical)
    assert params["iou_loss"].categories == ["giou", "diou", "ciou"]
    lr = params["training_args.learning_rate"]
    assert isinstance(lr, Float) and isinstance(lr.get_sampler(), LogUniform)
    assert (lr.lower, lr.upper) == (1e-5, 1e-3)
    epochs = params["training_args.num_train_epochs"]
    assert isinstance(epochs, Integer) and (epochs.lower, epochs.upper) == (2, 7)  # exclusive
    batch = params["training_args.per_device_train_batch_size"]
    assert isinstance(batch.sampler, Quantized) and batch.sampler.q == 4
    assert (batch.lower, batch.upper) == (4, 16)
    assert params["training_args.logging_steps"].upper == 51


def test_tune_domains_sample_inside_inclusive_bounds(full_spec: SearchSpec) -> None:
    params = to_tune_param_space(full_spec)
    for key, (low, high) in BOUNDS.items():
        values = [params[key].sample() for _ in range(400)]
        assert all(low <= v <= high for v in values), key
        if key in INTEGER_KEYS:
            assert all(float(v).is_integer() for v in values), key
    epochs = {params["training_args.num_train_epochs"].sample() for _ in range(300)}
    assert epochs == {2, 3, 4, 5, 6}  # inclusive upper bound
    batches = {params["training_args.per_device_train_batch_size"].sample() for _ in range(300)}
    assert batches == {4, 8, 12, 16}


def test_optuna_keeps_dotted_keys_and_inclusive_bounds(full_spec: SearchSpec) -> None:
    """Ray's Optuna converter: keys come back unchanged, integer upper bounds are reached."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = OptunaSearch(sampler=optuna.samplers.RandomSampler(seed=0))
    searcher.set_search_properties("eval_loss_bbox", "min", to_tune_param_space(full_spec))
    seen: dict[str, set] = {key: set() for key in full_spec.searched_keys()}
    for i in range(150):
        config = searcher.suggest(f"t{i}")
        assert set(config) == set(full_spec.searched_keys())
        config = quantize_params(full_spec.space, config)
        for key, value in config.items():
            seen[key].add(value)
        json.dumps(config)  # what params.json gets
    assert seen["training_args.num_train_epochs"] == {2, 3, 4, 5, 6}
    assert seen["training_args.per_device_train_batch_size"] == {4, 8, 12, 16}
    assert seen["iou_loss"] == {"giou", "diou", "ciou"}
    for key, (low, high) in BOUNDS.items():
        assert all(low <= v <= high for v in seen[key]), key
    grad_norms = seen["training_args.max_grad_norm"]
    assert all(abs(v * 10 - round(v * 10)) < 1e-9 for v in grad_norms)  # q restored


def test_trial_run_config_merges_and_validates(full_spec: SearchSpec) -> None:
    params = {"iou_loss": "ciou", "training_args.learning_rate": 3e-4,
              "training_args.max_grad_norm": 0.2600001}
    merged = trial_run_config(full_spec.base, full_spec.space, params)
    assert merged["iou_loss"] == "ciou" and merged["seed"] == 3
    assert merged["training_args"]["learning_rate"] == 3e-4
    assert merged["training_args"]["max_grad_norm"] == 0.3
    assert merged["training_args"]["num_train_epochs"] == 3  # from the base
    assert full_spec.base["iou_loss"] == "giou"  # base untouched
    run_config_from_dict(merged)


def test_quantize_params_snaps_and_clips() -> None:
    space = {"a": {"quniform": [0.0, 0.1, 0.01]}, "b": {"qrandint": [4, 16, 4]}, "c": 1}
    out = quantize_params(space, {"a": 0.30000000000000004, "b": 7, "c": 1.5, "d": 2})
    assert out == {"a": 0.1, "b": 8, "c": 1.5, "d": 2}
    assert quantize_params(space, {"a": 0.07000000000000001})["a"] == 0.07


# ---------------------------------------------------------------------------------------------
# defaults, overrides, base by path / inline


def test_defaults_on_the_embedded_base(tmp_path: Path) -> None:
    spec = load_search_spec(write(tmp_path, minimal(), "my-search.yaml"))
    assert spec.name == "my-search"
    assert (spec.metric, spec.mode, spec.num_samples, spec.max_concurrent) == (
        "eval_loss_bbox", "min", 8, None)
    assert (spec.searcher.seed, spec.searcher.n_startup_trials) == (0, 4)
    assert (spec.resources.cpus_per_trial, spec.resources.gpus_per_trial) == (1.0, 0.0)
    # the embedded default: ceil(num_train / batch) steps an epoch; first eval at logging_steps
    default = load_default_run_config()
    args = default.training_args
    steps = math.ceil(default.data.synthetic.num_train / args["per_device_train_batch_size"])
    assert spec.scheduler.max_t == steps * args["num_train_epochs"]
    assert spec.scheduler.grace_period == args["logging_steps"]
    assert spec.scheduler.reduction_factor == 3.0


def test_max_t_estimate_takes_the_longest_trial(tmp_path: Path) -> None:
    doc = {"space": {"training_args.num_train_epochs": {"randint": [1, 4]},
                     "training_args.per_device_train_batch_size": {"choice": [16, 4]}},
           "base_overrides": {"data.synthetic.num_train": 100}}
    spec = load_search_spec(write(tmp_path, doc))
    assert spec.scheduler.max_t == 4 * 25


def test_cli_overrides(tmp_path: Path) -> None:
    overrides = {"num_samples": 3, "max_concurrent": 1, "cpus_per_trial": 2.0,
                 "gpus_per_trial": 0.25, "seed": 7, "name": "other", "max_failures": None}
    spec = load_search_spec(write(tmp_path, minimal()), overrides)
    assert (spec.num_samples, spec.max_concurrent, spec.name, spec.searcher.seed) == (
        3, 1, "other", 7)
    assert (spec.resources.cpus_per_trial, spec.resources.gpus_per_trial) == (2.0, 0.25)
    assert spec.max_failures == 0
    assert spec.searcher.n_startup_trials == 2  # follows the overridden num_samples


def test_bad_cli_override_names_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, minimal())
    with pytest.raises(UserInputError) as err:
        load_search_spec(path, {"cpus_per_trial": 0})
    assert str(err.value).startswith(f"{path}: experiment.resources.cpus_per_trial")
    assert "--cpus-per-trial" in str(err.value)


def test_base_by_relative_path(tmp_path: Path) -> None:
    base = {
        "model": {"preset": "tiny"},
        "data": {"train": {"annotations": "coco/train.json", "images": "coco/images"},
                 "val": {"annotations": "coco/val.json", "images": "coco/images"}},
        "training_args": {"logging_steps": 20},
    }
    write(tmp_path / "configs", base, "run.yaml")
    doc = minimal(base="../configs/run.yaml",
                  experiment={"scheduler": {"max_t": 400}})
    spec = load_search_spec(write(tmp_path / "spaces", doc))
    train = spec.base["data"]["train"]
    assert train["annotations"] == str((tmp_path / "configs/coco/train.json").resolve())
    assert spec.base_source == str((tmp_path / "configs/run.yaml").resolve())
    assert (spec.scheduler.max_t, spec.scheduler.grace_period) == (400, 20)


def test_coco_base_needs_max_t(tmp_path: Path) -> None:
    base = {"model": {"preset": "tiny"},
            "data": {"train": {"annotations": "t.json", "images": "img"},
                     "val": {"annotations": "v.json", "images": "img"}}}
    path = write(tmp_path, minimal(base=base))
    with pytest.raises(UserInputError, match=r"experiment\.scheduler\.max_t: required"):
        load_search_spec(path)


def test_inline_base_paths_are_relative_to_the_space_file(tmp_path: Path) -> None:
    base = {"model": {"preset": "tiny"},
            "data": {"synthetic": {"num_train": 16, "cache_dir": "cache"}}}
    spec = load_search_spec(write(tmp_path, minimal(base=base)))
    assert spec.base["data"]["synthetic"]["cache_dir"] == str((tmp_path / "cache").resolve())
    assert spec.base["data"]["synthetic"]["num_train"] == 16
    assert spec.base_source == "inline"


def test_base_overrides_dotted_and_nested(tmp_path: Path) -> None:
    doc = minimal(base_overrides={
        "training_args.num_train_epochs": 2,
        "training_args": {"learning_rate": 1e-4},
        "model": {"image_size": 64},
        "evaluation.score_threshold": 0.3,
    })
    base = load_search_spec(write(tmp_path, doc)).base
    assert base["training_args"]["num_train_epochs"] == 2
    assert base["training_args"]["learning_rate"] == 1e-4
    assert base["training_args"]["per_device_train_batch_size"] == 8  # kept
    assert base["model"] == {"checkpoint": "builtin:tiny-shapes", "image_size": 64,
                             "config_overrides": {}}  # symbolic, never a path
    assert base["evaluation"]["score_threshold"] == 0.3


def test_setting_one_of_an_exclusive_pair_drops_the_other(tmp_path: Path) -> None:
    doc = minimal(base_overrides={"model.preset": "tiny"})
    base = load_search_spec(write(tmp_path, doc)).base
    assert base["model"]["preset"] == "tiny"
    assert "checkpoint" not in base["model"]  # the default's builtin:tiny-shapes is dropped
    doc = minimal(base_overrides={"model.checkpoint": "facebook/detr-resnet-50"})
    base = load_search_spec(write(tmp_path, doc, "hub.yaml")).base
    assert base["model"]["checkpoint"] == "facebook/detr-resnet-50"
    assert "preset" not in base["model"]
    doc = {"space": {"training_args.warmup_ratio": {"uniform": [0.0, 0.3]}}}
    spec = load_search_spec(write(tmp_path, doc, "ratio.yaml"))
    assert "warmup_steps" not in spec.base["training_args"]  # the default base had 0.05
    merged = trial_run_config(spec.base, spec.space, {"training_args.warmup_ratio": 0.1})
    run_config_from_dict(merged)


def test_searched_checkpoint_paths_become_absolute(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    doc = {"space": {"model.checkpoint": {"choice": ["facebook/detr-resnet-50", "./ckpt"]}}}
    spec = load_search_spec(write(tmp_path, doc))
    assert spec.space["model.checkpoint"]["choice"] == [
        "facebook/detr-resnet-50", str((tmp_path / "ckpt").resolve())]
    assert "preset" not in spec.base["model"]


def test_fixed_mapping_values_and_config_overrides(tmp_path: Path) -> None:
    doc = {"space": {
        "model.config_overrides.num_queries": {"choice": [10, 20]},
        "training_args.lr_scheduler_kwargs": {"power": 2.0},
        "augmentation.train": [{"HorizontalFlip": {"p": 0.5}}],
    }}
    spec = load_search_spec(write(tmp_path, doc))
    assert spec.fixed_values() == {"training_args.lr_scheduler_kwargs": {"power": 2.0},
                                   "augmentation.train": [{"HorizontalFlip": {"p": 0.5}}]}


def test_asha_rungs_match_ray() -> None:
    from ray.tune.schedulers import AsyncHyperBandScheduler

    for grace, rf, max_t in [(300, 3, 1500), (100, 3, 2500), (10, 2, 80), (5, 4, 5)]:
        ray_asha = AsyncHyperBandScheduler(time_attr="step", metric="m", mode="min",
                                           grace_period=grace, reduction_factor=rf, max_t=max_t)
        milestones = sorted(m for m, _ in ray_asha._brackets[0]._rungs)
        assert asha_rungs(grace, rf, max_t) == milestones
    assert asha_rungs(300, 3, 1500) == [300, 900]


def test_default_max_concurrent(full_spec: SearchSpec) -> None:
    res = full_spec.resources
    fits = [default_max_concurrent(res.cpus_per_trial, res.gpus_per_trial,
                                   full_spec.num_samples, cpus, gpus)
            for cpus, gpus in ((16, 1), (1, 4), (64, 64))]
    assert fits == [2, 1, 8]  # 0.5 GPU each; 1 CPU; capped by the number of trials


# ---------------------------------------------------------------------------------------------
# resources: one process a trial, or a data-parallel job of workers


def _resources(**given: object) -> ResourceSpec:
    return validated(ResourceSpec, given, "space.yaml", key_prefix="experiment.resources")


@pytest.mark.parametrize(("given", "expected"), [
    ({}, (1, 1.0, 0.0, 1.0, 0.0)),                                     # nothing: one process
    ({"cpus_per_trial": 4, "gpus_per_trial": 0.5}, (1, 4.0, 0.5, 4.0, 0.5)),   # the old form
    ({"workers_per_trial": 2}, (2, 1.0, 0.0, 2.0, 0.0)),              # per worker: defaults
    ({"workers_per_trial": 4, "cpus_per_worker": 2, "gpus_per_worker": 1},
     (4, 2.0, 1.0, 8.0, 4.0)),
    ({"cpus_per_worker": 3, "gpus_per_worker": 0.25}, (1, 3.0, 0.25, 3.0, 0.25)),
])
def test_resources_per_trial_are_the_totals_of_its_workers(given: dict,
                                                          expected: tuple) -> None:
    res = _resources(**given)
    assert (res.workers_per_trial, res.cpus_per_worker, res.gpus_per_worker,
            res.cpus_per_trial, res.gpus_per_trial) == expected
    assert res.cpus_per_trial == res.workers_per_trial * res.cpus_per_worker
    assert res.gpus_per_trial == res.workers_per_trial * res.gpus_per_worker
    assert res.model_fields_set == set(given)  # the totals filled in are not "given"


def test_data_parallel_resources_reach_the_spec_and_its_file(tmp_path: Path) -> None:
    doc = minimal(experiment={"resources": {"workers_per_trial": 2, "cpus_per_worker": 2}})
    spec = load_search_spec(write(tmp_path, doc))
    res = spec.resources
    assert (res.workers_per_trial, res.cpus_per_worker, res.gpus_per_worker) == (2, 2.0, 0.0)
    assert (res.cpus_per_trial, res.gpus_per_trial) == (4.0, 0.0)
    written = spec.to_yaml_dict()
    assert {k: written["experiment"][k] for k in (
        "cpus_per_trial", "gpus_per_trial", "workers_per_trial", "cpus_per_worker",
        "gpus_per_worker")} == {"cpus_per_trial": 4.0, "gpus_per_trial": 0.0,
                                "workers_per_trial": 2, "cpus_per_worker": 2.0,
                                "gpus_per_worker": 0.0}
    back = SearchSpec.from_yaml_dict(yaml.safe_load(yaml.safe_dump(written)), "spec.yaml")
    assert back.resources == res
    # a folder written before data-parallel trials: one worker holding the trial's resources
    for key in ("workers_per_trial", "cpus_per_worker", "gpus_per_worker"):
        del written["experiment"][key]
    written["experiment"].update(cpus_per_trial=3.0, gpus_per_trial=0.5)
    old = SearchSpec.from_yaml_dict(written, "spec.yaml").resources
    assert (old.workers_per_trial, old.cpus_per_worker, old.gpus_per_worker,
            old.cpus_per_trial, old.gpus_per_trial) == (1, 3.0, 0.5, 3.0, 0.5)


@pytest.mark.parametrize("pydantic_state", [True, False])
def test_resources_pickled_before_workers_are_one_worker(pydantic_state: bool) -> None:
    """An older experiment's tuner.pkl holds a spec whose resources have no worker keys."""
    old = {"cpus_per_trial": 2.0, "gpus_per_trial": 0.5}
    state = ({"__dict__": old, "__pydantic_fields_set__": set(old),
              "__pydantic_extra__": None, "__pydantic_private__": None}
             if pydantic_state else dict(old))  # a plain dataclass before the schema
    res = ResourceSpec.__new__(ResourceSpec)
    res.__setstate__(state)
    assert (res.workers_per_trial, res.cpus_per_worker, res.gpus_per_worker,
            res.cpus_per_trial, res.gpus_per_trial) == (1, 2.0, 0.5, 2.0, 0.5)
    assert pickle.loads(pickle.dumps(res)) == res


def test_a_cpus_per_trial_flag_with_a_data_parallel_file_names_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, minimal(experiment={"resources": {"workers_per_trial": 2}}))
    for override, flag in (("cpus_per_trial", "--cpus-per-trial"),
                           ("gpus_per_trial", "--gpus-per-trial")):
        with pytest.raises(UserInputError) as err:
            load_search_spec(path, {override: 1.0})
        assert str(err.value) == (
            f"{path}: experiment.resources.{override} (from {flag}): give either "
            "cpus_per_trial / gpus_per_trial (one process a trial) or workers_per_trial / "
            "cpus_per_worker / gpus_per_worker (a data-parallel trial), not both")


def test_max_steps_count_the_batches_of_every_worker() -> None:
    base = {"data": {"synthetic": {"num_train": 100}},
            "training_args": {"per_device_train_batch_size": 8, "num_train_epochs": 3,
                              "gradient_accumulation_steps": 1}}
    # ceil(100 / (8 x workers)) steps an epoch: 13, 7, 4
    assert [estimate_max_steps(base, {}, workers) for workers in (1, 2, 3)] == [39, 21, 15]
    assert estimate_max_steps(base, {}) == 39  # one worker by default
    base["training_args"]["gradient_accumulation_steps"] = 2
    assert estimate_max_steps(base, {}, 2) == 3 * (7 // 2)  # HF: batches // accumulation
    base["training_args"]["max_steps"] = 50
    assert estimate_max_steps(base, {}, 4) == 50  # max_steps is the global step count


def test_max_t_estimate_follows_the_workers(tmp_path: Path) -> None:
    doc = {"space": {"training_args.num_train_epochs": {"randint": [1, 4]},
                     "training_args.per_device_train_batch_size": {"choice": [16, 4]}},
           "base_overrides": {"data.synthetic.num_train": 100},
           "experiment": {"resources": {"workers_per_trial": 2}}}
    spec = load_search_spec(write(tmp_path, doc))
    assert spec.scheduler.max_t == 4 * math.ceil(100 / (4 * 2))


# ---------------------------------------------------------------------------------------------
# errors: one line naming the file and the key


def _space(key: str, value: object) -> dict:
    return {"space": {key: value}}


ERROR_CASES = {
    "unknown top-level key": ({"spaces": {}, **minimal()}, "spaces", "unknown top-level key"),
    "unknown experiment key": (minimal(experiment={"metrc": "eval_loss"}),
                               "experiment.metrc", "unknown key"),
    "unknown scheduler key": (minimal(experiment={"scheduler": {"grace": 3}}),
                              "experiment.scheduler.grace", "unknown key"),
    "unknown resources key": (minimal(experiment={"resources": {"gpus": 1}}),
                              "experiment.resources.gpus", "unknown key"),
    "unknown distribution": (_space("training_args.learning_rate", {"logunif": [1e-5, 1e-3]}),
                             "space.training_args.learning_rate", "unknown distribution"),
    "distribution with a second key": (
        _space("training_args.learning_rate", {"loguniform": [1e-5, 1e-3], "extra": 1}),
        "space.training_args.learning_rate", "a distribution is one key with its arguments"),
    "bare list on a number": (_space("training_args.learning_rate", [1e-5, 1e-3]),
                              "space.training_args.learning_rate",
                              "a list is not a value of this numeric key"),
    "searched data": (_space("data.train.annotations", {"choice": ["a.json", "b.json"]}),
                      "space.data.train.annotations",
                      "the data is prepared once for the whole search"),
    "low >= high": (_space("training_args.learning_rate", {"uniform": [1e-3, 1e-3]}),
                    "space.training_args.learning_rate", "must be below high"),
    "loguniform low <= 0": (_space("training_args.learning_rate", {"loguniform": [0.0, 1e-3]}),
                            "space.training_args.learning_rate", "> 0 on a log scale"),
    "lograndint low <= 0": (_space("training_args.logging_steps", {"lograndint": [0, 10]}),
                            "space.training_args.logging_steps", "> 0 on a log scale"),
    "empty choice": (_space("iou_loss", {"choice": []}), "space.iou_loss", "non-empty list"),
    "choice not a list": (_space("iou_loss", {"choice": "giou"}), "space.iou_loss",
                          "non-empty list"),
    "repeated choice": (_space("iou_loss", {"choice": ["giou", "giou"]}), "space.iou_loss",
                        "twice"),
    "wrong arity": (_space("training_args.weight_decay", {"quniform": [0.0, 0.1]}),
                    "space.training_args.weight_decay", "[low, high, q]"),
    "bound not a multiple of q": (_space("training_args.per_device_train_batch_size",
                                         {"qrandint": [3, 16, 4]}),
                                  "space.training_args.per_device_train_batch_size",
                                  "not a multiple"),
    "randint with floats": (_space("training_args.num_train_epochs", {"randint": [1.5, 4]}),
                            "space.training_args.num_train_epochs", "integers"),
    "bound not a number": (_space("training_args.learning_rate", {"uniform": ["a", 1]}),
                           "space.training_args.learning_rate", "numbers"),
    "unknown run-config key": (_space("model.size", {"choice": [1, 2]}), "space.model.size",
                               "unknown run-config key"),
    "unknown top run-config key": (_space("lr", {"uniform": [0.1, 0.2]}), "space.lr",
                                   "unknown run-config key"),
    "unknown TrainingArguments field": (_space("training_args.learnin_rate",
                                               {"loguniform": [1e-5, 1e-3]}),
                                        "space.training_args.learnin_rate",
                                        "not a transformers.TrainingArguments field"),
    "owned TrainingArguments field": (_space("training_args.seed", {"randint": [1, 3]}),
                                      "space.training_args.seed", "set by detr_core"),
    "unknown config field": (_space("model.config_overrides.num_querys", {"choice": [1, 2]}),
                             "space.model.config_overrides.num_querys",
                             "not a config field of any supported DETR-family model"),
    "key below a leaf": (_space("iou_loss.x", {"choice": [1, 2]}), "space.iou_loss.x",
                         "not a mapping"),
    "bad choice value": (_space("iou_loss", {"choice": ["giou", "xiou"]}), "space.iou_loss",
                         "'xiou'"),
    "bad last choice value": (_space("freeze_backbone", {"choice": [True, False, "no"]}),
                              "space.freeze_backbone", "'no'"),
    "float range on an int field": (_space("training_args.per_device_train_batch_size",
                                           {"uniform": [4, 16]}),
                                    "space.training_args.per_device_train_batch_size",
                                    "draws floats"),
    "float choice on an int field": (_space("training_args.per_device_train_batch_size",
                                            {"choice": [4, 8.5]}),
                                     "space.training_args.per_device_train_batch_size",
                                     "expected an integer"),
    "numbers for a string field": (_space("iou_loss", {"uniform": [0, 1]}), "space.iou_loss",
                                   "draws numbers"),
    "range end invalid for the run": (_space("model.image_size", {"randint": [16, 128]}),
                                      "space.model.image_size", "value 16"),
    "fixed value of the wrong type": ({"space": {"seed": "abc", **minimal()["space"]}},
                                      "space.seed", "integer"),
    "warmup range mixing ratio and steps": (_space("training_args.warmup_steps",
                                                   {"uniform": [0.0, 10.0]}),
                                            "space.training_args.warmup_steps", "ratio"),
    "warmup_ratio out of range": (_space("training_args.warmup_ratio", {"uniform": [0.0, 1.0]}),
                                  "space.training_args.warmup_ratio", "must be < 1, got 1.0"),
    "overlapping keys": ({"space": {"model": {"preset": "tiny"},
                                    "model.image_size": {"choice": [64, 96]}}},
                         "space.model.image_size", "overlaps"),
    "both of an exclusive pair": ({"space": {"model.preset": {"choice": ["tiny"]},
                                             "model.checkpoint": "x"}},
                                  "space.model.checkpoint", "excludes"),
    "nothing searched": (_space("seed", 3), "space", "nothing to search"),
    "no space": ({"experiment": {"num_samples": 2}}, "space", "missing"),
    "space not a mapping": ({"space": ["iou_loss"]}, "space", "expected a mapping"),
    "metric not reported": (minimal(experiment={"metric": "map"}), "experiment.metric",
                            "not reported"),
    "bad mode": (minimal(experiment={"mode": "minimum"}), "experiment.mode",
                 "one of 'min' or 'max'"),
    "num_samples < 1": (minimal(experiment={"num_samples": 0}), "experiment.num_samples",
                        ">= 1"),
    "num_samples not int": (minimal(experiment={"num_samples": "8"}),
                            "experiment.num_samples", "integer"),
    "max_concurrent < 1": (minimal(experiment={"max_concurrent": 0}),
                           "experiment.max_concurrent", ">= 1"),
    "grace_period < 1": (minimal(experiment={"scheduler": {"grace_period": 0}}),
                         "experiment.scheduler.grace_period", ">= 1"),
    "reduction_factor <= 1": (minimal(experiment={"scheduler": {"reduction_factor": 1}}),
                              "experiment.scheduler.reduction_factor", "> 1"),
    "max_t < grace_period": (minimal(experiment={"scheduler": {"grace_period": 300,
                                                               "max_t": 100}}),
                             "experiment.scheduler.max_t", ">= grace_period"),
    "cpus_per_trial 0": (minimal(experiment={"resources": {"cpus_per_trial": 0}}),
                         "experiment.resources.cpus_per_trial", "> 0"),
    "gpus_per_trial < 0": (minimal(experiment={"resources": {"gpus_per_trial": -1}}),
                           "experiment.resources.gpus_per_trial", ">= 0"),
    "gpus_per_trial 1.5": (minimal(experiment={"resources": {"gpus_per_trial": 1.5}}),
                           "experiment.resources.gpus_per_trial", "whole number"),
    "workers_per_trial 0": (minimal(experiment={"resources": {"workers_per_trial": 0}}),
                            "experiment.resources.workers_per_trial", ">= 1"),
    "workers_per_trial 1.5": (minimal(experiment={"resources": {"workers_per_trial": 1.5}}),
                              "experiment.resources.workers_per_trial", "integer"),
    "cpus_per_worker 0": (minimal(experiment={"resources": {"cpus_per_worker": 0}}),
                          "experiment.resources.cpus_per_worker", "> 0"),
    "gpus_per_worker 1.5": (minimal(experiment={"resources": {"gpus_per_worker": 1.5}}),
                            "experiment.resources.gpus_per_worker", "whole number"),
    "both resource forms": (minimal(experiment={"resources": {"gpus_per_trial": 1,
                                                              "gpus_per_worker": 1}}),
                            "experiment.resources.gpus_per_trial",
                            "give either cpus_per_trial / gpus_per_trial (one process a trial) "
                            "or workers_per_trial / cpus_per_worker / gpus_per_worker"),
    "a GPU shared by two workers": (minimal(experiment={"resources": {
        "workers_per_trial": 2, "gpus_per_worker": 0.5}}),
        "experiment.resources.gpus_per_worker", "NCCL cannot put two ranks of one job on one"),
    "two GPUs a worker": (minimal(experiment={"resources": {
        "workers_per_trial": 2, "gpus_per_worker": 2}}),
        "experiment.resources.gpus_per_worker", "each worker has 0 or 1 GPU"),
    "bad name": (minimal(experiment={"name": "a/b"}), "experiment.name", "folder name"),
    "scheduler not a mapping": (minimal(experiment={"scheduler": 3}),
                                "experiment.scheduler", "mapping"),
    "base of a wrong type": (minimal(base=3), "base", "a path or a mapping"),
    "base file missing": (minimal(base="nope.yaml"), "base", "file not found"),
    "inline base invalid": (minimal(base={"model": {"preset": "tiny"},
                                          "data": {"synthetic": {"num_train": 0}}}),
                            "base.data.synthetic.num_train", ">= 1"),
    "base_overrides unknown key": (minimal(base_overrides={"training_args": {"foo": 1}}),
                                   "base_overrides.training_args.foo",
                                   "TrainingArguments field"),
    "base_overrides wrong type": (minimal(base_overrides={"model.image_size": "big"}),
                                  "base_overrides.model.image_size", "integer"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_name_the_file_and_the_key(tmp_path: Path, case: str) -> None:
    doc, key, problem = ERROR_CASES[case]
    path = write(tmp_path, doc)
    with pytest.raises(UserInputError) as err:
        load_search_spec(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message, message
    assert "\n" not in message


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="not valid YAML"):
        load_search_spec(write(tmp_path, "space: {iou_loss: [\n"))
    with pytest.raises(UserInputError, match="file not found"):
        load_search_spec(tmp_path / "missing.yaml")


def test_reported_metrics_include_the_contract() -> None:
    for metric in ("eval_loss", "eval_loss_bbox", "eval_loss_iou", "eval_loss_ce",
                   "eval_map", "eval_map_50", "eval_iou_mean", "eval_center_error_px"):
        assert metric in REPORTED_METRICS


# ---------------------------------------------------------------------------------------------
# shipped files


SHIPPED = sorted((REPO / "search_spaces").glob("*.yaml"))


@pytest.mark.skipif(not SHIPPED, reason="no search_spaces/*.yaml yet")
@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_space_files_load(path: Path) -> None:
    spec = load_search_spec(path)
    assert spec.searched_keys()
    to_tune_param_space(spec)


def test_module_docstring_example_loads(tmp_path: Path) -> None:
    """The format reference in the module docstring is itself a valid file."""
    import search.space.spec

    doc = search.space.spec.__doc__.split("```yaml\n", 1)[1].split("```", 1)[0]
    base = {"model": {"preset": "tiny"}, "data": {"synthetic": {"num_train": 8}}}
    write(tmp_path / "configs", base, "run.yaml")
    path = write(tmp_path / "spaces", textwrap.dedent(doc))
    spec = load_search_spec(path)
    assert spec.name == "iou" and spec.base["data"]["synthetic"]["num_train"] == 8
