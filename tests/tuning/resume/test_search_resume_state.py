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

from detr_core.files.errors import UserInputError
from search.resume.state import repair_saved_state
from search.store.storage import UriPath

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


def _trial_whose_saved_checkpoint_tune_deleted(folder: Path, checkpoints: int
                                               ) -> tuple[Path, str]:
    """Ray's own checkpoint manager (num_to_keep=1, as the search sets it) registers
    `checkpoints` checkpoints of a trial; the run metadata is saved after the second-to-last,
    and registering the last deletes the one that state names (the window a killed driver
    leaves). Returns the trial folder and the saved run metadata."""
    from ray.train import Checkpoint, CheckpointConfig
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    trial_dir = folder / "train_detr_abc_1_lr=0.001"
    metadata = _TrainingRunMetadata()
    metadata.checkpoint_manager = _CheckpointManager(CheckpointConfig(
        num_to_keep=1, checkpoint_score_attribute="eval_loss_bbox",
        checkpoint_score_order="min"))
    saved = ""
    for index in range(checkpoints):
        path = trial_dir / f"checkpoint_{index:06d}"
        path.mkdir(parents=True)
        (path / "checkpoint_meta.json").write_text(json.dumps({"step": 4 * index + 4}))
        if index == checkpoints - 1:
            saved = metadata.get_json_state()
        loss = 0.5 + index / 10  # the first is the best: Tune keeps it and the latest
        metadata.checkpoint_manager.register_checkpoint(_TrainingResult(
            Checkpoint.from_directory(str(path)), {"eval_loss_bbox": loss, "step": 4 * index}))
    return trial_dir, saved


def _state_with(folder: Path, run_metadata: str) -> Path:
    state = folder / f"experiment_state-{NEW}.json"
    trial = json.dumps({"trial_id": "abc", "status": "RUNNING"})
    state.write_text(json.dumps({"trial_data": [[trial, run_metadata]], "runner_data": {},
                                 "stats": {}}))
    return state


def _latest_checkpoint(state: Path):
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    run_metadata = json.loads(state.read_text())["trial_data"][0][1]
    return _TrainingRunMetadata.from_json_state(run_metadata).checkpoint_manager \
        .latest_checkpoint_result


def test_a_trial_whose_saved_checkpoint_tune_deleted_resumes_from_its_newest_one(
        tmp_path: Path) -> None:
    from ray.train._internal.storage import _exists_at_fs_path

    trial_dir, saved = _trial_whose_saved_checkpoint_tune_deleted(tmp_path, checkpoints=3)
    assert sorted(p.name for p in trial_dir.iterdir()) == ["checkpoint_000000",
                                                           "checkpoint_000002"]
    state = _state_with(tmp_path, saved)
    gone = _latest_checkpoint(state).checkpoint
    assert gone.path.endswith("checkpoint_000001")
    assert not _exists_at_fs_path(gone.filesystem, gone.path)  # Tune's restore would raise

    notes = repair_saved_state(tmp_path)
    assert notes == ["trial abc: its saved checkpoint checkpoint_000001 was deleted by Tune "
                     "before its killed session saved the next; resuming from "
                     "checkpoint_000002"]
    latest = _latest_checkpoint(state)
    assert latest.checkpoint.path == str(trial_dir / "checkpoint_000002")
    assert _exists_at_fs_path(latest.checkpoint.filesystem, latest.checkpoint.path)
    assert repair_saved_state(tmp_path) == []  # whole now: left alone


def test_a_trial_with_no_checkpoint_left_starts_over(tmp_path: Path) -> None:
    import shutil

    trial_dir, saved = _trial_whose_saved_checkpoint_tune_deleted(tmp_path, checkpoints=3)
    shutil.rmtree(trial_dir)
    trial_dir.mkdir()
    state = _state_with(tmp_path, saved)
    assert repair_saved_state(tmp_path) == [
        "trial abc: its saved checkpoint checkpoint_000001 was deleted by Tune before its "
        "killed session saved the next; resuming from no checkpoint: it starts over"]
    assert _latest_checkpoint(state) is None
