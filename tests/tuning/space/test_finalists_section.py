"""`experiment.finalists` in a space file (and `--finalists` / `--finalist-seeds` over it):
read, defaulted, refused in one line naming the key or the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from detr_core.files.errors import UserInputError
from search.space.spec import SearchSpec, load_search_spec

SPACE = """\
experiment:
  name: finals
{finalists}
space:
  iou_loss: {{choice: [giou, diou]}}
"""


def _spec(tmp_path: Path, finalists: str, overrides: dict | None = None) -> SearchSpec:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE.format(finalists=finalists))
    return load_search_spec(path, overrides or {})


@pytest.mark.parametrize(("text", "overrides", "expected"), [
    ("", {}, (0, 0, False)),                                    # no stage unless asked for
    ("  finalists: {top: 2, seeds: 4}", {}, (2, 4, True)),
    ("  finalists: {}", {}, (3, 3, True)),                      # the section alone: defaults
    ("  finalists: {top: 2}", {"finalists_seeds": 5}, (2, 5, True)),
    ("", {"finalists_top": 1, "finalists_seeds": 3}, (1, 3, True)),   # --final-seeds 3
    ("  finalists: {top: 2, seeds: 4}", {"finalists_top": 0}, (0, 0, False)),  # --finalists 0
])
def test_the_section_and_its_flags(tmp_path: Path, text: str, overrides: dict,
                                   expected: tuple) -> None:
    stage = _spec(tmp_path, text, overrides).finalists
    assert (stage.top, stage.seeds, stage.on) == expected
    again = SearchSpec.from_yaml_dict(_spec(tmp_path, text, overrides).to_yaml_dict(), "x")
    assert again.finalists == stage


@pytest.mark.parametrize(("text", "overrides", "says"), [
    ("  finalists: {top: -1}", {}, "experiment.finalists.top: must be >= 0, got -1"),
    ("  finalists: {seeds: 0}", {}, "experiment.finalists.seeds: must be >= 1, got 0"),
    ("  finalists: {top: two}", {}, "experiment.finalists.top: expected an integer, got str"),
    ("  finalists: {top: 2, runs: 3}", {}, "experiment.finalists.runs: unknown key"),
    ("  finalists: [3, 2]", {}, "experiment.finalists: expected a mapping, got list"),
    ("", {"finalists_top": -2}, "experiment.finalists.top (from --finalists): must be >= 0"),
])
def test_a_bad_value_is_one_line_naming_the_key(tmp_path: Path, text: str, overrides: dict,
                                                says: str) -> None:
    with pytest.raises(UserInputError) as info:
        _spec(tmp_path, text, overrides)
    assert says in str(info.value) and "\n" not in str(info.value), str(info.value)
