"""One home per rule: detr_core's structured errors, key types, path keys and defaults, and
the search layer using them instead of copies (no message parsing, no duplicated schema)."""

from __future__ import annotations

import pickle
import re
import typing
from pathlib import Path

import pytest

from detr_core.config.run_config import (
    PATH_KEYS,
    DataConfig,
    SplitPaths,
    SyntheticConfig,
    key_type,
    resolve_path_value,
    run_config_from_dict,
)
from detr_core.config.training_args import DEFAULT_TRAINING_ARGS, training_arg_default
from detr_core.files.errors import UserInputError, exit_on_user_error

REPO = Path(__file__).resolve().parents[2]


def test_user_input_error_carries_its_parts() -> None:
    err = UserInputError("must be >= 1", source="run.yaml", key="data.synthetic.num_train")
    assert (err.source, err.key, err.problem) == ("run.yaml", "data.synthetic.num_train",
                                                  "must be >= 1")
    assert str(err) == "run.yaml: data.synthetic.num_train: must be >= 1"
    assert str(UserInputError("file not found", source=Path("/x/a.yaml"))) == \
        "/x/a.yaml: file not found"
    plain = UserInputError("just a message")
    assert (plain.source, plain.key, str(plain)) == (None, None, "just a message")


def test_relocated_reports_from_another_file_under_a_prefix() -> None:
    err = UserInputError("expected an integer", source="<config>", key="model.image_size")
    moved = err.relocated("space.yaml", "base_overrides")
    assert str(moved) == "space.yaml: base_overrides.model.image_size: expected an integer"
    keyless = UserInputError("top level must be a mapping").relocated("s.yaml", "base")
    assert (keyless.key, str(keyless)) == ("base", "s.yaml: base: top level must be a mapping")


def test_user_input_error_pickles_with_its_parts() -> None:
    """A trial's error crosses from a Ray worker to the driver by pickle."""
    err = pickle.loads(pickle.dumps(UserInputError("bad", source="trial 3", key="seed")))
    assert (err.source, err.key, err.problem, str(err)) == ("trial 3", "seed", "bad",
                                                             "trial 3: seed: bad")


def test_run_config_errors_are_structured() -> None:
    with pytest.raises(UserInputError) as info:
        run_config_from_dict({"model": {"preset": "tiny", "image_size": "big"},
                              "data": {"synthetic": {}}}, source="run.yaml")
    assert (info.value.source, info.value.key) == ("run.yaml", "model.image_size")
    assert info.value.problem.startswith("expected an integer")
    with pytest.raises(UserInputError) as info:
        run_config_from_dict({"model": {"preset": "tiny"}, "data": {"synthetic": {}},
                              "training_args": {"seed": 3}}, source="run.yaml")
    assert info.value.key == "training_args.seed"
    assert info.value.problem.startswith("set by detr_core")


def test_cli_guard_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    @exit_on_user_error
    def main() -> int:
        raise UserInputError("multi\nline  problem", source="f.yaml", key="k")

    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    assert capsys.readouterr().err == "error: f.yaml: k: multi line problem\n"


@pytest.mark.parametrize(("key", "expected"), [
    ("iou_loss", typing.Literal["giou", "diou", "ciou"]),
    ("model.image_size", int),
    ("training_args.warmup_ratio", float),
    ("model.config_overrides.num_queries", typing.Any),
    ("data.synthetic.num_train", int),
])
def test_key_type_answers_from_detr_core(key: str, expected: object) -> None:
    assert key_type(key) == expected


@pytest.mark.parametrize(("key", "problem"), [
    ("model.size", "unknown run-config key"),
    ("training_args.seed", "set by detr_core"),
    ("training_args.learnin_rate", "not a transformers.TrainingArguments field"),
    ("model.config_overrides.num_querys", "not a config field of any supported DETR-family model"),
    ("iou_loss.x", "not a mapping"),
    ("training_args.learning_rate.x", "has no sub-keys"),
])
def test_key_type_refuses_with_the_key_named(key: str, problem: str) -> None:
    with pytest.raises(UserInputError) as info:
        key_type(key)
    assert info.value.key == key and problem in info.value.problem


def test_path_keys_and_the_checkpoint_rule(tmp_path: Path) -> None:
    assert "data.train.annotations" in PATH_KEYS and "model.checkpoint" in PATH_KEYS
    assert resolve_path_value("data.val.images", "imgs", tmp_path) == str(tmp_path / "imgs")
    assert resolve_path_value("model.checkpoint", "facebook/detr-resnet-50", tmp_path) == \
        "facebook/detr-resnet-50"  # a Hub name stays
    (tmp_path / "ckpt").mkdir()
    assert resolve_path_value("model.checkpoint", "ckpt", tmp_path) == str(tmp_path / "ckpt")
    assert resolve_path_value("iou_loss", "giou", tmp_path) == "giou"  # not a path key


def test_has_test_split() -> None:
    split = SplitPaths(annotations="a.json", images="img")
    assert DataConfig(synthetic=SyntheticConfig(num_test=8)).has_test_split
    assert not DataConfig(synthetic=SyntheticConfig(num_test=0)).has_test_split
    assert DataConfig(train=split, val=split, test=split).has_test_split
    assert not DataConfig(train=split, val=split).has_test_split


def test_training_arg_defaults_come_from_detr_core_then_transformers() -> None:
    assert training_arg_default("logging_steps") == DEFAULT_TRAINING_ARGS["logging_steps"]
    assert training_arg_default("gradient_accumulation_steps") == 1  # transformers' own
    assert training_arg_default("max_steps") == -1


def test_no_copies_of_detr_core_rules_in_search() -> None:
    """The duplicates the split removed stay removed."""
    text = "\n".join(p.read_text() for p in (REPO / "search").rglob("*.py")
                     if p.name != "__init__.py")  # an __init__ names its modules as strings
    for copy in ("_SENTINEL", "_rekey", "_PATH_KEYS", "or [8]", "or [3]", "or [500]",
                 "CHECKPOINT_META =", '"finalists.json"', '"search_spec.yaml"'):
        assert text.count(copy) <= (1 if copy.startswith('"') else 0), copy
    assert len(re.findall(r"^class SearchSpec\b", text, re.M)) == 1
    assert "def export_best_model" not in text  # detr_core.train has the one of that name


def test_matplotlib_only_in_plots() -> None:
    importers = {p.name for p in (REPO / "search").rglob("*.py")
                 if re.search(r"^\s*(import|from) matplotlib", p.read_text(), re.M)}
    assert importers == {"plots.py"}
