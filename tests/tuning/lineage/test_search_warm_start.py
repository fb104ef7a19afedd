"""`--warm-start`: which earlier trials fit a new space (each rule), what the plan says, the
sources refused (exit 2, one line, nothing written), the trials arriving in the Optuna study
(values, intermediate values, PRUNED kept PRUNED, random startup trials skipped), a source on
a storage URI, and the export ranking a warm-start winner with its own experiment's config
and model. Fake experiment folders on disk (the files Ray Tune leaves), no Ray started."""

from __future__ import annotations

import copy
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from s3_server import S3Server, apply_env, s3_server
from search_helpers import FAKE_SPEC, METRIC, write_fake_experiment, write_fake_trial, write_space

from detr_core.files.errors import UserInputError
from search.lineage.warm_start import fit_trial, fits, plan_warm_start
from search.results.export import export_experiment
from search.results.warm_trials import write_warm_start_record
from search.run import main
from search.space.spec import SearchSpec, load_search_spec, to_tune_param_space, write_spec_file
from search.store.storage import copy_tree, location
from search.store.study_journal import journal_storage
from search.trial.searcher import AshaAwareOptunaSearch

LR = "training_args.learning_rate"
WARMUP = "training_args.warmup_steps"
EPOCHS = "training_args.num_train_epochs"


def spec_from(raw: dict[str, Any]) -> SearchSpec:
    return SearchSpec.from_yaml_dict(copy.deepcopy(raw), "test")


def new_spec(**space_changes: Any) -> SearchSpec:
    """FAKE_SPEC with space entries replaced (None removes one)."""
    raw = copy.deepcopy(FAKE_SPEC)
    for key, entry in space_changes.items():
        key = key.replace("__", ".")
        if entry is None:
            raw["space"].pop(key, None)
        else:
            raw["space"][key] = entry
    return spec_from(raw)


# ---------------------------------------------------------------------------------------------
# the rules, one key at a time


@pytest.mark.parametrize(("value", "entry", "expected"), [
    ("giou", "giou", True),                                      # fixed: the same value
    ("giou", "ciou", False),
    (True, 1, False),                                            # a bool is not the number 1
    (3, 3.0, True),
    ("diou", {"choice": ["giou", "diou"]}, True),                # choice: one of them
    ("ciou", {"choice": ["giou", "diou"]}, False),
    (1e-3, {"loguniform": [1e-4, 1e-3]}, True),                  # range: bounds inclusive
    (1.01e-3, {"loguniform": [1e-4, 1e-3]}, False),
    (9e-5, {"loguniform": [1e-4, 1e-3]}, False),
    (4, {"randint": [2, 6]}, True),
    (4.5, {"randint": [2, 6]}, False),                           # integers only
    (0.3, {"quniform": [0.0, 1.0, 0.1]}, True),                  # a multiple of q
    (0.25, {"quniform": [0.0, 1.0, 0.1]}, False),
    ("giou", {"uniform": [0.0, 1.0]}, False),
])
def test_a_value_fits_a_space_entry_by_its_rule(value: Any, entry: Any, expected: bool) -> None:
    assert fits(value, entry) is expected


def test_a_key_the_old_search_did_not_have_takes_its_old_base_value() -> None:
    old_base = {"iou_loss": "giou", "training_args": {"learning_rate": 1e-4}}
    trained = {LR: 2e-4}
    values, why = fit_trial(trained, old_base, {LR: {"loguniform": [1e-5, 1e-3]}}, old_base,
                            {LR: {"loguniform": [1e-5, 1e-3]},
                             "iou_loss": {"choice": ["giou", "ciou"]}})
    assert (values, why) == ({LR: 2e-4, "iou_loss": "giou"}, None)
    values, why = fit_trial(trained, old_base, {LR: {"loguniform": [1e-5, 1e-3]}}, old_base,
                            {LR: {"loguniform": [1e-5, 1e-3]}, "iou_loss": {"choice": ["ciou"]}})
    assert values is None
    assert why == ("`iou_loss` is not a value of choice ciou", "giou")


def test_a_key_only_the_old_search_had_must_equal_the_new_base_value() -> None:
    base = {"freeze_backbone": False}
    old_space = {"freeze_backbone": {"choice": [True, False]}}
    assert fit_trial({"freeze_backbone": False}, base, old_space, base, {})[0] == {}
    values, why = fit_trial({"freeze_backbone": True}, base, old_space, base, {})
    assert values is None
    assert why[0] == "`freeze_backbone` is not in the new space and the new base run trains false"


def test_a_key_set_nowhere_in_the_old_search_is_not_guessed() -> None:
    values, why = fit_trial({}, {}, {}, {}, {"ema.decay": {"uniform": [0.9, 0.999]}})
    assert values is None and "`ema.decay` was not set in that search" in why[0]
    values, why = fit_trial({"ema.decay": 0.99}, {}, {"ema.decay": {"uniform": [0.9, 0.999]}},
                            {}, {})
    assert why == ("`ema.decay` is not in the new space and the new base run trains the "
                   "run's default (not known here)", 0.99)


def test_a_value_at_a_bound_within_rounding_enters_the_study_inside_it() -> None:
    values, _ = fit_trial({LR: 1e-3 * (1 + 1e-13)}, {}, {}, {},
                          {LR: {"loguniform": [1e-4, 1e-3]}})
    assert values == {LR: 1e-3}  # Optuna's distribution refuses anything above its high


def test_resume_refuses_a_space_file_that_describes_another_search(source: Path) -> None:
    from search.running.driver import check_same_search

    same = new_spec()
    check_same_search(source, same, str(source))  # the same search: nothing to say
    with pytest.raises(UserInputError, match="space key `training_args.learning_rate` is "
                       r"loguniform \[1e-05, 0.001\] \(log scale\) there and loguniform "
                       r"\[1e-05, 0.01\] \(log scale\) here"):
        check_same_search(source, new_spec(training_args__learning_rate={
            "loguniform": [1e-5, 1e-2]}), str(source))
    changed = new_spec()
    changed.base["model"]["image_size"] = 128
    with pytest.raises(UserInputError, match=r"base key `model\.image_size` is 96 there and 128"):
        check_same_search(source, changed, str(source))


def test_a_second_time_budget_cut_keeps_the_first_one_s_trials(tmp_path: Path) -> None:
    from search.running.time_budget import write_budget_record

    write_budget_record(tmp_path, 60.0, ["a", "b"])
    write_budget_record(tmp_path, 30.0, ["b", "c"])
    assert json.loads((tmp_path / "time_budget.json").read_text()) == {
        "budget_s": 30.0, "cut_trials": ["a", "b", "c"]}


# ---------------------------------------------------------------------------------------------
# the plan


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """The fake finished search `iou`: 2 completed, 1 ASHA-stopped, 1 errored, 1 interrupted,
    1 never started."""
    return write_fake_experiment(tmp_path / "results" / "iou")


def test_the_plan_takes_finished_and_stopped_trials_and_says_why_others_are_left_out(
        source: Path) -> None:
    # the new space narrows the learning rate (the ASHA-stopped trial's 2e-5 falls out) and
    # drops the epochs, which the new base fixes at 5 (the 4-epoch trial falls out)
    spec = new_spec(training_args__learning_rate={"loguniform": [5e-5, 5e-4]},
                    training_args__num_train_epochs=None)
    spec.base["training_args"]["num_train_epochs"] = 5
    record = plan_warm_start(spec, [str(source), str(source)])  # the same source counts once
    assert [t.trial_id for t in record.trials] == ["aaaaa_00000"]
    assert record.lines() == [
        f"{source} (iou): 1 of 6 trial(s) taken, 5 left out",
        "  left out 1: `training_args.num_train_epochs` is not in the new space and the new "
        "base run trains 5; its value: 4",
        "  left out 1: `training_args.learning_rate` is not a value of loguniform [5e-05, "
        "0.0005] (log scale); its value: 2e-05",
        "  left out 1: errored",
        "  left out 1: interrupted (not a finished or ASHA-stopped trial)",
        "  left out 1: not started (not a finished or ASHA-stopped trial)",
    ]
    taken = record.trials[0]
    assert taken.params == {"iou_loss": "giou", "freeze_backbone": False, LR: 1e-4,
                            WARMUP: 0.0, "seed": 3}
    assert taken.source_params[EPOCHS] == 5
    assert (taken.best_value, taken.best_step, taken.pruned) == (0.20, 600, False)


def test_an_asha_stopped_trial_goes_to_the_study_as_pruned_with_its_intermediate_values(
        source: Path) -> None:
    record = plan_warm_start(new_spec(), [str(source)])
    stopped = next(t for t in record.trials if t.trial_id == "aaaaa_00002")
    told = stopped.optuna_trial(METRIC, new_spec().searched_keys())
    assert (told["state"], told["value"], told["intermediate_values"]) == ("PRUNED", None,
                                                                          {300: 0.40})
    assert "seed" not in told["params"]  # fixed values are not Optuna parameters


# ---------------------------------------------------------------------------------------------
# refused sources: through search/run.py in-process, exit 2 with one line, nothing written


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    return write_space(tmp_path / "space.yaml", "narrow",
                       {"iou_loss": {"choice": ["giou", "diou"]},
                        LR: {"loguniform": [1e-4, 1e-2]}}, num_samples=2)


def exit_code(argv: list[str]) -> int:
    """`search/run.py` in-process: its return value, or the code it exits with."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def _source_like(space_file: Path, folder: Path, change: Any = None) -> Path:
    """An experiment folder whose spec is the space file's (changed by `change(raw)`)."""
    raw = load_search_spec(space_file).to_yaml_dict()
    if change is not None:
        change(raw)
    trial = ({"iou_loss": "giou", LR: 1e-3}, 8, [(2, 0.3), (4, 0.2), (8, 0.1)], True, False,
             False)
    folder.mkdir(parents=True)
    (folder / "search_spec.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    write_fake_trial(folder, 0, "bbbbb_00000", trial)
    return folder


@pytest.mark.parametrize(("change", "message"), [
    (None, "not a search experiment folder"),
    (lambda raw: raw["experiment"].update(metric="eval_map_50", mode="max"),
     "that search optimised eval_map_50 (max), this one eval_loss_bbox (min)"),
    (lambda raw: raw["experiment"].update(mode="max"),
     "that search optimised eval_loss_bbox (max), this one eval_loss_bbox (min)"),
    (lambda raw: raw["base"]["data"]["synthetic"].update(num_train=64),
     "its base run differs: `data.synthetic.num_train` is 64 there and 32 here"),
    (lambda raw: raw["base"]["model"].update(image_size=96),
     "its base run differs: `model.image_size` is 96 there and 64 here"),
    (lambda raw: raw["experiment"].update(max_t=4),
     "its budget differs: experiment max_t 4 there, 8 here"),
])
def test_a_source_that_cannot_seed_the_study_is_refused_in_one_line(
        space_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        change: Any, message: str) -> None:
    where = tmp_path / "old" / "iou"
    if change is None:
        where.mkdir(parents=True)
        (where / "notes.txt").write_text("not an experiment")
    else:
        _source_like(space_file, where, change)
    storage = tmp_path / "results"
    code = exit_code(["--space", str(space_file), "--storage", str(storage),
                      "--warm-start", str(where)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0] and str(where) in err[0], err
    assert not storage.exists()  # nothing written


def test_warm_start_with_resume_is_refused(space_file: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    where = _source_like(space_file, tmp_path / "old" / "iou")
    code = exit_code(["--space", str(space_file), "--storage", str(tmp_path / "results"),
                      "--resume", "--warm-start", str(where)])
    assert code == 2
    assert "--warm-start: seeds a new search" in capsys.readouterr().err


def test_the_dry_run_plan_says_what_was_taken_and_that_startup_trials_are_covered(
        space_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = _source_like(space_file, tmp_path / "old" / "iou")
    assert main(["--space", str(space_file), "--storage", str(tmp_path / "results"),
                 "--warm-start", str(where), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1 random startup trials (1 warm-start trial(s) count toward 2)" in out
    assert "Warm start (1 trial(s) of earlier searches, not trained again):" in out
    assert f"{where} (narrow): 1 of 1 trial(s) taken" in out


# ---------------------------------------------------------------------------------------------
# the study


def _warm_searcher(record: Any, spec: SearchSpec, storage: Any = None,
                   n_startup: int = 3) -> AshaAwareOptunaSearch:
    searcher = AshaAwareOptunaSearch(
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=n_startup),
        storage=storage, study_name=spec.name, metric=spec.metric, mode=spec.mode,
        max_t=spec.scheduler.max_t,
        warm_start=[t.optuna_trial(spec.metric, spec.searched_keys()) for t in record.trials])
    searcher.set_search_properties(spec.metric, spec.mode, to_tune_param_space(spec))
    return searcher


def test_warm_start_trials_arrive_in_the_study_and_tpe_skips_its_random_startup(
        source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = new_spec()
    record = plan_warm_start(spec, [str(source)])  # 2 completed + 1 ASHA-stopped
    storage = journal_storage(location(tmp_path / "study"))
    searcher = _warm_searcher(record, spec, storage, n_startup=3)
    trials = searcher.study.get_trials()
    assert [(t.state.name, t.value, t.intermediate_values) for t in trials] == [
        ("COMPLETE", 0.20, {300: 0.30, 600: 0.20, 900: 0.25, 1200: 0.26, 1500: 0.27}),
        ("COMPLETE", 0.10, {300: 0.28, 600: 0.15, 900: 0.10, 1200: 0.12}),
        ("PRUNED", None, {300: 0.40}),
    ]
    assert trials[1].params[LR] == 3.2e-4
    assert {t.user_attrs["warm_start_source"] for t in trials} == {str(source)}

    random_draws = []
    sampler = searcher.study.sampler
    original = sampler._random_sampler.sample_independent
    monkeypatch.setattr(sampler._random_sampler, "sample_independent",
                        lambda *a, **k: random_draws.append(a) or original(*a, **k))
    searcher.suggest("first")
    assert random_draws == []  # 3 warm-start trials >= 3 startup trials: TPE from the start

    # a resumed search opens the same journal: the warm-start trials are not added twice
    again = _warm_searcher(record, spec, journal_storage(location(tmp_path / "study")))
    assert len([t for t in again.study.get_trials() if t.user_attrs]) == 3


def test_too_few_warm_start_trials_leave_random_startup_trials(source: Path) -> None:
    spec = new_spec()
    record = plan_warm_start(spec, [str(source)])
    searcher = _warm_searcher(record, spec, n_startup=5)
    sampler = searcher.study.sampler
    draws = []
    original = sampler._random_sampler.sample_independent
    sampler._random_sampler.sample_independent = (
        lambda *a, **k: draws.append(a) or original(*a, **k))
    searcher.suggest("first")
    assert len(draws) == len(spec.searched_keys())  # 3 < 5: still random


# ---------------------------------------------------------------------------------------------
# a source on a storage URI


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def test_a_source_on_a_storage_uri_is_read_like_a_local_one(
        source: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    apply_env(s3, monkeypatch)
    uri = s3.uri("warm/iou")
    copy_tree(location(source), location(uri))
    record = plan_warm_start(new_spec(), [uri])
    assert [t.trial_id for t in record.trials] == ["aaaaa_00000", "aaaaa_00001", "aaaaa_00002"]
    assert all(t.trial_dir.startswith(uri.split("?")[0]) for t in record.trials)
    assert record.sources[0].source == str(location(uri))


# ---------------------------------------------------------------------------------------------
# the export of a warm-started search


def test_a_warm_start_trial_can_win_and_its_config_and_model_come_from_its_experiment(
        source: Path, tmp_path: Path) -> None:
    spec = new_spec()
    spec.name = "iou-2"
    record = plan_warm_start(spec, [str(source)])
    new = tmp_path / "results" / "iou-2"
    new.mkdir()
    write_spec_file(spec, new)
    write_warm_start_record(new, record)
    # one trial trained by the new search, worse than the earlier winner (0.10)
    write_fake_trial(new, 0, "ccccc_00000", ({"iou_loss": "diou", "freeze_backbone": True,
                                              LR: 5e-4, WARMUP: 0.1, EPOCHS: 3, "seed": 3},
                                             900, [(300, 0.3), (600, 0.15)], True, False,
                                             True))
    summary = export_experiment(new, evaluate_winner=False)
    assert summary.winner.trial_id == "aaaaa_00001" and summary.winner.origin == str(source)
    with open(new / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial_id"], r["origin"], r["source_experiment"]) for r in rows] == [
        ("aaaaa_00001", "warm-start", str(source)),
        ("ccccc_00000", "search", ""),
        ("aaaaa_00000", "warm-start", str(source)),
        ("aaaaa_00002", "warm-start", str(source)),
    ]
    best = (new / "best_config.yaml").read_text()
    assert "a warm-start trial of experiment" in best and str(source) in best
    assert yaml.safe_load(best)["training_args"]["learning_rate"] == 3.2e-4
    exported = json.loads((new / "best_model" / "export_source.json").read_text())
    assert "aaaaa_00001" in json.dumps(exported)
    report = (new / "REPORT.md").read_text()
    assert "## Warm start" in report
    assert f"- {source} (iou): 3 of 6 trial(s) taken, 3 left out" in report
    assert "  - left out 1: errored" in report
    assert "a warm-start trial of" in report
