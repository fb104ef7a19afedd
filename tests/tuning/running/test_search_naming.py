"""Experiment names: `make run` twice gives `iou`, then `iou-2` (said in one line, with a
warning when the newest is unfinished); `--resume` alone continues the newest; an explicit
`--name` that exists is refused. In a local folder and on `s3://` (moto's server), and through
`search/run.py --dry-run` in-process (nothing starts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from s3_server import S3Server, apply_env, s3_server
from search_helpers import FAKE_SPEC, write_space

from detr_core.files.errors import UserInputError
from search.run import main
from search.running.cli import choose_experiment, existing_suffixes, unfinished_reason
from search.store.storage import location


@pytest.fixture(scope="module")
def s3_module() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, s3_module: S3Server,
            monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty results root: a local folder or an S3 prefix of this test alone."""
    if request.param == "local":
        return str(tmp_path / "results")
    apply_env(s3_module, monkeypatch)
    return s3_module.uri(request.node.name.replace("[", "-").replace("]", ""))


def _experiment(storage: str, name: str, num_samples: int = 2,
                ended: tuple[str, ...] | None = None) -> None:
    """An experiment folder as a search leaves it: its spec, and Ray's state when `ended`."""
    folder = location(f"{storage}/{name}")
    folder.mkdir(parents=True, exist_ok=True)
    spec = dict(FAKE_SPEC, name=name)
    spec["experiment"] = dict(FAKE_SPEC["experiment"], num_samples=num_samples)
    (folder / "search_spec.yaml").write_text(yaml.safe_dump(spec))
    if ended is not None:
        trials = [[json.dumps({"trial_id": f"t{i}", "status": status,
                               "relative_logdir": f"train_detr_t{i}"}), "{}"]
                  for i, status in enumerate(ended)]
        (folder / "experiment_state-2026-11-26_01-00-00.json").write_text(
            json.dumps({"trial_data": trials}))


def test_a_new_stem_is_used_as_it_is(storage: str) -> None:
    choice = choose_experiment(storage, "iou", explicit=False, resume=False)
    assert (choice.name, choice.notes) == ("iou", [])


def test_existing_names_get_the_next_suffix_said_in_one_line(storage: str) -> None:
    _experiment(storage, "iou", ended=("TERMINATED", "ERROR"))
    choice = choose_experiment(storage, "iou", explicit=False, resume=False)
    assert choice.name == "iou-2"
    assert choice.notes == [f"{storage}/iou exists: this search is iou-2 ({storage}/iou-2); "
                            "`--resume` continues iou instead"]

    _experiment(storage, "iou-2", ended=("TERMINATED", "TERMINATED"))
    _experiment(storage, "iou-7", ended=("TERMINATED", "TERMINATED"))
    _experiment(storage, "iou-x")  # not a suffix
    _experiment(storage, "ioux")
    assert existing_suffixes(storage, "iou") == {1: "iou", 2: "iou-2", 7: "iou-7"}
    choice = choose_experiment(storage, "iou", explicit=False, resume=False)
    assert choice.name == "iou-8"  # one past the newest, so the newest is the highest number
    assert len(choice.notes) == 1 and "iou-7 exists" in choice.notes[0]


def test_an_unfinished_newest_experiment_is_warned_about(storage: str) -> None:
    _experiment(storage, "iou", num_samples=3, ended=("TERMINATED", "RUNNING", "PENDING"))
    choice = choose_experiment(storage, "iou", explicit=False, resume=False)
    assert choice.name == "iou-2"
    assert choice.notes[1] == ("warning: iou is unfinished (1 of 3 trials ended); `--resume` "
                               "continues it")
    _experiment(storage, "iou-2", num_samples=3)  # died before Ray saved any state
    assert unfinished_reason(location(f"{storage}/iou-2")) == "0 of 3 trials ended"
    location(f"{storage}/iou-2/time_budget.json").write_text("{}")  # ended on purpose
    assert unfinished_reason(location(f"{storage}/iou-2")) is None


def test_resume_without_name_continues_the_newest(storage: str) -> None:
    for name in ("iou", "iou-2", "iou-3"):
        _experiment(storage, name, ended=("TERMINATED",))
    choice = choose_experiment(storage, "iou", explicit=False, resume=True)
    assert choice.name == "iou-3"
    assert choice.notes == [f"resuming iou-3, the newest in {storage} (also: iou, iou-2)"]
    assert choose_experiment(storage, "iou", explicit=True, resume=True).name == "iou"


def test_an_explicit_existing_name_is_refused_pointing_to_resume(storage: str) -> None:
    _experiment(storage, "mine")
    with pytest.raises(UserInputError) as exc:
        choose_experiment(storage, "mine", explicit=True, resume=False)
    message = str(exc.value)
    assert message.startswith(f"{location(f'{storage}/mine')}: experiment 'mine' exists; ")
    assert "--resume" in message and "\n" not in message
    assert choose_experiment(storage, "other", explicit=True, resume=False).name == "other"


# ---------------------------------------------------------------------------------------------
# search/run.py, in-process with --dry-run: what the user reads


def test_run_twice_is_a_new_numbered_experiment_and_an_existing_name_is_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = write_space(tmp_path / "space.yaml", "iou", {"seed": {"choice": [1, 2]}},
                        num_samples=2)
    storage = tmp_path / "results"
    _experiment(str(storage), "iou", num_samples=2, ended=("TERMINATED",))
    args = ["--space", str(space), "--storage", str(storage), "--dry-run"]

    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"{storage}/iou exists: this search is iou-2 ({storage}/iou-2); "
                      "`--resume` continues iou instead")
    assert out[1] == "warning: iou is unfinished (1 of 2 trials ended); `--resume` continues it"
    assert out[2] == f"Search 'iou-2' from {space}"
    assert f"  results     {storage / 'iou-2'}" in out

    assert main([*args, "--resume"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"resuming iou, the newest in {storage}"
    assert f"  results     {storage / 'iou'}" in out

    with pytest.raises(SystemExit) as exc:
        main([*args, "--name", "iou"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "pass --resume to continue it" in captured.err
    assert sorted(p.name for p in storage.iterdir()) == ["iou"]  # --dry-run wrote nothing
