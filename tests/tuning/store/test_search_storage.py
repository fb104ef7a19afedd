"""Experiments on storage URIs: `search.store.storage` over pyarrow.fs, the export and the Optuna
journal on `s3://` (moto's S3 server on 127.0.0.1, read back with boto3) and `file://`.

The export's outputs on a URI are compared with the same export of the same fake experiment in
a local folder: a URI must give the very same files, not a subset.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from s3_server import S3Server, apply_env, s3_server
from search_helpers import write_fake_experiment

from search.export import main
from search.results.export import copy_report, export_experiment
from search.store.storage import UriPath, copy_tree, folder_has_entries, location, remove_tree

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def s3_module() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture
def s3(s3_module: S3Server, monkeypatch: pytest.MonkeyPatch, request) -> S3Server:
    """The module's S3 server, with this process's clients pointed at it for one test."""
    apply_env(s3_module, monkeypatch)
    return s3_module


def _unique(request: pytest.FixtureRequest) -> str:
    return request.node.name.replace("[", "-").replace("]", "")


@pytest.fixture
def root_uri(request: pytest.FixtureRequest, tmp_path: Path, s3_module: S3Server,
             monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh storage root: `s3://bucket/<test>` or `file:///tmp/.../<test>`."""
    if request.param == "s3":
        apply_env(s3_module, monkeypatch)
        return s3_module.uri(_unique(request))
    return f"file://{tmp_path / 'storage'}"


def _read(uri: str) -> bytes:
    return location(uri).read_bytes()


# ---------------------------------------------------------------------------------------------
# UriPath and the copy helpers


def test_uri_path_writes_lists_and_reads_back_through_s3(s3: S3Server, request) -> None:
    root = location(s3.uri(_unique(request)))
    assert isinstance(root, UriPath) and str(root) == s3.uri(_unique(request))
    assert not root.exists() and not folder_has_entries(root)
    (root / "a" / "one.txt").write_text("1")
    (root / "a" / "two.json").write_bytes(b"{}")
    (root / "b" / "seed_3" / "test_metrics.json").write_text("{}")

    prefix = f"{_unique(request)}/"
    assert s3.keys(prefix) == [f"{prefix}a/one.txt", f"{prefix}a/two.json",
                               f"{prefix}b/seed_3/test_metrics.json"]
    assert root.is_dir() and folder_has_entries(root)
    assert [p.name for p in root.iterdir()] == ["a", "b"]
    assert all(p.is_dir() for p in root.iterdir())
    assert [p.name for p in root.glob("a/*.txt")] == ["one.txt"]
    assert [str(p.relative_to(root)) for p in root.glob("b/seed_*/test_metrics.json")] == \
        ["b/seed_3/test_metrics.json"]
    one = root / "a" / "one.txt"
    assert one.is_file() and not one.is_dir() and one.read_text() == "1"
    assert one.stat().st_size == 1 and one.stat().st_mtime > 0
    assert one.parent == root / "a" and one.name == "one.txt" and one.suffix == ".txt"
    assert root / "a" / "." / "one.txt" == one
    with pytest.raises(FileNotFoundError):
        (root / "a" / "missing.txt").read_text()
    one.unlink()
    (root / "a" / "missing.txt").unlink(missing_ok=True)
    assert s3.keys(f"{prefix}a/") == [f"{prefix}a/two.json"]
    remove_tree(root / "b")
    assert s3.keys(f"{prefix}b/") == []


def test_copy_tree_goes_both_ways_and_leaves_out_what_it_is_told(
        s3: S3Server, tmp_path: Path, request) -> None:
    local = tmp_path / "run"
    (local / "best_model").mkdir(parents=True)
    (local / "best_model" / "config.json").write_text('{"a": 1}')
    (local / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (local / "checkpoints" / "checkpoint-4" / "optimizer.pt").write_bytes(b"\0" * 10)
    (local / "trial.log").write_text("log\n")
    remote = location(s3.uri(_unique(request)))

    copied = copy_tree(local, remote, exclude={"checkpoints"})
    assert copied == ["best_model/config.json", "trial.log"]
    assert s3.keys(_unique(request)) == [f"{_unique(request)}/best_model/config.json",
                                         f"{_unique(request)}/trial.log"]
    back = tmp_path / "back"
    assert copy_tree(remote, back) == copied
    assert (back / "best_model" / "config.json").read_text() == '{"a": 1}'
    assert (back / "trial.log").read_text() == "log\n"


def test_a_storage_uri_that_pyarrow_cannot_resolve_is_a_user_error() -> None:
    from detr_core.files.errors import UserInputError

    with pytest.raises(UserInputError, match="storage URI not usable"):
        location("nosuchscheme://bucket/results")


# ---------------------------------------------------------------------------------------------
# The export on a URI gives the same files as on a local folder


def _strip(report: str, *places: str) -> list[str]:
    lines = []
    for line in report.splitlines():
        if line.startswith(("Generated ", "optuna-dashboard ", "# copy ")):
            continue  # the date; how to open the journal (copied first from an object store)
        for place in places:
            line = line.replace(place, "X")
        lines.append(line)
    return lines


@pytest.mark.parametrize("root_uri", ["s3", pytest.param("file", marks=pytest.mark.slow)],
                         indirect=True)
@pytest.mark.slow
def test_export_on_a_storage_uri_writes_the_same_outputs_as_on_a_local_folder(
        root_uri: str, tmp_path: Path) -> None:
    local = write_fake_experiment(tmp_path / "local" / "iou")
    uri = f"{root_uri}/iou"
    copy_tree(local, location(uri))  # the trial folders, as Ray Tune writes them to storage
    local_summary = export_experiment(local, evaluate_winner=False)
    summary = export_experiment(uri, evaluate_winner=False)

    assert isinstance(summary.experiment_dir, UriPath)
    assert str(summary.report_path) == f"{uri}/REPORT.md"
    assert summary.winner_trial_id == local_summary.winner_trial_id == "aaaaa_00001"
    assert summary.model_step == 900
    # every output, read back from the URI
    assert _read(f"{uri}/trials.csv") == (local / "trials.csv").read_bytes()
    assert yaml.safe_load(_read(f"{uri}/best_config.yaml")) == \
        yaml.safe_load((local / "best_config.yaml").read_text())
    assert f"--config {uri}/best_config.yaml" in _read(f"{uri}/best_config.yaml").decode()
    for name in ("config.json", "model.safetensors", "export_source.json"):
        assert _read(f"{uri}/best_model/{name}") == (local / "best_model" / name).read_bytes()
    plots = sorted(p.name for p in location(f"{uri}/plots").iterdir())
    assert plots == sorted(p.name for p in (local / "plots").iterdir())
    assert len(plots) == 8
    for name in plots:
        assert _read(f"{uri}/plots/{name}").startswith(PNG_SIGNATURE), name
    report = _read(f"{uri}/REPORT.md").decode()
    assert _strip(report, uri) == _strip((local / "REPORT.md").read_text(), str(local))
    assert f"python search/export.py {uri}" in report
    if uri.startswith("s3://"):
        assert f"# copy {uri}/optuna_study.log here first" in report
    # a local copy of the report (`--report-dir`), with the plots it shows
    copy_dir = tmp_path / "report-copy"
    assert copy_report(summary, copy_dir) == copy_dir / "REPORT.md"
    copied = (copy_dir / "REPORT.md").read_text()
    assert copied == report
    links = [line[line.index("](") + 2:-1] for line in copied.splitlines()
             if line.startswith("![")]
    assert links and all((copy_dir / link).is_file() for link in links)


@pytest.mark.slow
def test_winner_is_evaluated_from_a_download_and_its_log_uploaded(
        s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request,
        capsys: pytest.CaptureFixture[str]) -> None:
    import search.results.winner as winner_eval

    uri = s3.uri(f"{_unique(request)}/iou")
    copy_tree(write_fake_experiment(tmp_path / "iou"), location(uri))
    calls = []

    def fake_evaluate(best_config, config_path, model_dir):
        assert isinstance(model_dir, Path) and (model_dir / "config.json").is_file()
        calls.append((str(config_path), model_dir.name))
        (model_dir / "test_evaluation.log").write_text("evaluated\n")
        return {"map": 0.5, "map_50": 0.8, "recall": 0.9, "iou_mean": 0.7}

    monkeypatch.setattr(winner_eval, "evaluate_on_test", fake_evaluate)
    copy_dir = tmp_path / "report"
    assert main([uri, "--report-dir", str(copy_dir)]) == 0  # the CLI on a URI
    assert calls == [(f"{uri}/best_config.yaml", "best_model")]
    metrics = json.loads(_read(f"{uri}/test_metrics.json"))
    assert metrics["map_50"] == 0.8
    assert _read(f"{uri}/best_model/test_evaluation.log") == b"evaluated\n"
    report = _read(f"{uri}/REPORT.md").decode()
    assert "## Test metrics of the winner" in report
    out = capsys.readouterr().out
    assert f"report:      {uri}/REPORT.md" in out
    assert f"report copy: {copy_dir / 'REPORT.md'}" in out
    assert (copy_dir / "REPORT.md").read_text() == report
    assert sorted(p.name for p in (copy_dir / "plots").iterdir()) == \
        sorted(p.name for p in location(f"{uri}/plots").iterdir())
    # current metrics are reused: no second evaluation
    experiment = location(uri)
    found, error = winner_eval.winner_test_metrics(
        experiment, yaml.safe_load(_read(f"{uri}/best_config.yaml")),
        experiment / "best_config.yaml", experiment / "best_model", evaluate=True)
    assert (found, error, len(calls)) == (metrics, None, 1)


def test_export_of_a_uri_without_an_experiment_is_one_line_exit_2(
        s3: S3Server, capsys: pytest.CaptureFixture[str], request) -> None:
    with pytest.raises(SystemExit) as exc:
        main([s3.uri(f"{_unique(request)}/nothing")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such folder" in err[0] and "s3://" in err[0]


# ---------------------------------------------------------------------------------------------
# The Optuna journal on a URI


def test_study_journal_on_s3_is_uploaded_at_every_write_and_pickles_without_local_paths(
        s3: S3Server, request) -> None:
    import optuna

    from search.store.study_journal import journal_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    experiment = location(s3.uri(f"{_unique(request)}/iou"))
    storage = journal_storage(experiment)
    study = optuna.create_study(storage=storage, study_name="iou")
    for x in (0.5, 0.25):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        study.tell(trial, x)
    key = f"{_unique(request)}/iou/optuna_study.log"
    uploaded = s3.read(key)
    assert uploaded == Path(storage._backend._file_path).read_bytes()

    data = pickle.dumps(storage)  # what Tune's searcher state holds
    assert storage._backend._file_path.encode() not in data
    restored = pickle.loads(data)
    assert restored._backend._file_path != storage._backend._file_path  # a fresh download
    again = optuna.load_study(study_name="iou", storage=restored)
    assert [t.value for t in again.trials] == [0.5, 0.25]
    again.tell(again.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.125)
    assert len(s3.read(key)) > len(uploaded)
    reread = optuna.load_study(study_name="iou", storage=journal_storage(experiment))
    assert [t.value for t in reread.trials] == [0.5, 0.25, 0.125]


def test_study_journal_on_a_file_uri_is_the_file_in_the_folder(tmp_path: Path) -> None:
    import optuna

    from search.store.study_journal import journal_storage

    storage = journal_storage(location(f"file://{tmp_path / 'iou'}"))  # folder made too
    study = optuna.create_study(storage=storage, study_name="iou")
    study.tell(study.ask(), 1.0)
    lines = (tmp_path / "iou" / "optuna_study.log").read_text().splitlines()
    assert lines and all(json.loads(line) for line in lines)



def test_storage_that_cannot_be_written_is_one_line_before_ray_starts(
        s3: S3Server, tmp_path: Path) -> None:
    import ray
    from search_helpers import write_space

    from detr_core.files.errors import UserInputError
    from search.running.driver import SearchOptions, run_search
    from search.space.spec import load_search_spec

    space = write_space(tmp_path / "space.yaml", "iou",
                        {"seed": {"choice": [1, 2]}}, num_samples=1)
    spec = load_search_spec(space, {})
    with pytest.raises(UserInputError) as exc:
        run_search(spec, SearchOptions(storage="s3://no-such-bucket/results"))
    message = str(exc.value)
    assert message.startswith("s3://no-such-bucket/results/iou: cannot write there: ")
    assert "\n" not in message
    assert not ray.is_initialized()


def test_a_storage_that_does_not_answer_is_waited_out_then_given_up_on(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`patiently`: network and service errors are retried (1 s, 2 s ... apart) for up to
    `$DETR_SEARCH_STORAGE_WAIT_S`, with one line when the wait starts and one when it ends;
    errors of the request itself are raised at once."""
    from search.store import storage

    slept: list[float] = []
    monkeypatch.setattr(storage.time, "sleep", slept.append)
    monkeypatch.setenv(storage.STORAGE_WAIT_ENV, "1000")
    down = OSError("When reading 'b/k': AWS Error NETWORK_CONNECTION during GetObject")
    answers = iter([down, down, down, b"data"])

    def action() -> bytes:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert storage.patiently(action, "s3://b/k") == b"data"
    assert slept == [1.0, 2.0, 4.0]
    err = capsys.readouterr().err
    assert "warning: storage s3://b/k does not answer (When reading" in err
    assert err.count("does not answer") == 1 and "storage s3://b/k answers again" in err
    # a request's own error (missing file, denied access) is not waited on
    for error in (FileNotFoundError("b/k"), PermissionError("AWS Error ACCESS_DENIED")):
        slept.clear()
        with pytest.raises(type(error)):
            storage.patiently(lambda error=error: (_ for _ in ()).throw(error), "s3://b/k")
        assert slept == []
    # away for longer than the wait: one StorageUnavailable naming the storage
    monkeypatch.setenv(storage.STORAGE_WAIT_ENV, "0")
    with pytest.raises(storage.StorageUnavailable, match="storage s3://b/k did not answer"):
        storage.patiently(lambda: (_ for _ in ()).throw(down), "s3://b/k")
