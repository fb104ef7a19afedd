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


def test_spec_parts_pickled_before_the_schema_still_load() -> None:
    """An experiment written before the spec's sections were pydantic models holds them in
    Tune's tuner.pkl (the console's copy of the spec) pickled as plain dataclasses: a resume
    reads them back field for field."""
    import copyreg
    import io
    import pickle

    from search.space.spec import FinalistsSpec, SchedulerSpec

    old_states = {SchedulerSpec: {"grace_period": 5, "reduction_factor": 3.0, "max_t": 50},
                  FinalistsSpec: {"top": 2, "seeds": 2}}

    class DataclassPickler(pickle.Pickler):  # what the old dataclasses wrote
        def reducer_override(self, obj: object) -> object:
            if type(obj) in old_states:
                return copyreg.__newobj__, (type(obj),), old_states[type(obj)]
            return NotImplemented

    buffer = io.BytesIO()
    DataclassPickler(buffer, protocol=4).dump([SchedulerSpec(), FinalistsSpec()])
    scheduler, finalists = pickle.loads(buffer.getvalue())
    assert (scheduler.grace_period, scheduler.max_t, scheduler.rungs()) == (5, 50,
                                                                            [5.0, 15.0, 45.0])
    assert finalists.on and (finalists.top, finalists.seeds) == (2, 2)
    assert pickle.loads(pickle.dumps(scheduler)) == scheduler
