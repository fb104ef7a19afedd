"""A resume after a killed session: state files it left cut short are set aside.

Tune copies its state files into the experiment folder in place; a driver killed mid-copy
leaves the newest one truncated and `Tuner.restore` then starts over silently (seen in CI:
`_pickle.UnpicklingError: pickle data was truncated` on searcher-state-*.pkl). Real searcher
pickles (Ray's `OptunaSearch.save`) and real Tune restores are used here.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import optuna
import pytest
from ray.tune.search import ConcurrencyLimiter, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from detr_core.errors import UserInputError
from search.resume_state import repair_saved_state
from search.storage import UriPath

OLD, NEW = "2026-11-27_05-56-18", "2026-11-27_05-58-02"


def _searcher(trials: int) -> OptunaSearch:
    """A searcher whose metric name says which session saved it."""
    return OptunaSearch(space={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2)},
                        metric=f"loss_after_{trials}_trials", mode="min",
                        sampler=optuna.samplers.TPESampler(seed=0))


def _experiment(folder: Path, cut: set[str]) -> Path:
    """Two sessions' state files as Tune writes them (`SearchGenerator.save_to_dir`: a
    search_gen_state-*.json that is a pickle, and searcher-state-*.pkl); the newest of each
    family in `cut` truncated."""
    for session, trials in ((OLD, 2), (NEW, 3)):
        state = json.dumps({"trial_data": [f"t{i}" for i in range(trials)]}).encode()
        (folder / f"experiment_state-{session}.json").write_bytes(state)
        SearchGenerator(ConcurrencyLimiter(_searcher(trials), max_concurrent=2)).save_to_dir(
            str(folder), session_str=session)
        if session == NEW:
            for family in cut:
                path = next(folder.glob(f"{family}-{NEW}.*"))
                path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return folder


def test_whole_files_as_tune_writes_them_are_left_alone(tmp_path: Path) -> None:
    folder = _experiment(tmp_path, cut=set())
    before = sorted(p.name for p in folder.iterdir())
    assert repair_saved_state(folder) == []
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_cut_searcher_state_is_set_aside_and_tune_restores_the_previous_one(
        tmp_path: Path) -> None:
    folder = _experiment(tmp_path, cut={"searcher-state"})
    with pytest.raises(pickle.UnpicklingError):  # what the resume hit before
        _searcher(0).restore_from_dir(str(folder))
    notes = repair_saved_state(folder)
    assert len(notes) == 1 and notes[0].startswith(f"searcher-state-{NEW}.pkl was cut short")
    assert (folder / f"damaged-searcher-state-{NEW}.pkl").is_file()
    assert not (folder / f"searcher-state-{NEW}.pkl").exists()
    restored = _searcher(0)
    restored.restore_from_dir(str(folder))  # Tune's own choice of file: the older, whole one
    assert restored.metric == "loss_after_2_trials"
    # the whole files of the newest session are left alone
    assert (folder / f"experiment_state-{NEW}.json").is_file()
    assert repair_saved_state(folder) == []  # nothing more to do


def test_a_cut_experiment_state_falls_back_to_the_previous_session(tmp_path: Path) -> None:
    folder = _experiment(tmp_path, cut={"experiment_state"})
    notes = repair_saved_state(folder)
    assert [n.split(" ")[0] for n in notes] == [f"experiment_state-{NEW}.json"]
    newest = max(folder.glob("experiment_state-*.json"))
    assert json.loads(newest.read_text())["trial_data"] == ["t0", "t1"]


def test_every_searcher_state_cut_takes_the_generator_state_with_it(tmp_path: Path) -> None:
    folder = _experiment(tmp_path, cut={"searcher-state"})
    old = folder / f"searcher-state-{OLD}.pkl"
    old.write_bytes(old.read_bytes()[:100])
    notes = repair_saved_state(folder)
    assert not list(folder.glob("searcher-state-*.pkl"))
    assert not list(folder.glob("search_gen_state-*.json"))  # Tune would raise without one
    assert len(notes) == 4


def test_no_whole_experiment_state_left_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / f"experiment_state-{NEW}.json").write_text('{"trial_data": [')
    with pytest.raises(UserInputError, match="no whole experiment state is left"):
        repair_saved_state(tmp_path)


def test_repair_works_on_a_storage_uri(tmp_path: Path) -> None:
    folder = _experiment(tmp_path, cut={"searcher-state", "search_gen_state"})
    notes = repair_saved_state(UriPath.from_uri(f"file://{folder}"))
    assert len(notes) == 2
    assert (folder / f"damaged-search_gen_state-{NEW}.json").is_file()
    assert max(p.name for p in folder.glob("searcher-state-*.pkl")) == \
        f"searcher-state-{OLD}.pkl"
