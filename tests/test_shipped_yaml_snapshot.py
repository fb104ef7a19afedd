"""Every shipped YAML (run configs, search spaces, benchmark settings) resolves to the run
config and search spec recorded in `tests/snapshots/shipped_yaml.json` (`tests/shipped_yaml.py`
says how each is resolved and how to regenerate it when a change is meant)."""

from __future__ import annotations

import json

import pytest

from tests import shipped_yaml

RECORDED = json.loads(shipped_yaml.SNAPSHOT.read_text())
RESOLVED = shipped_yaml.resolve_all()


def test_the_snapshot_covers_every_shipped_yaml() -> None:
    shipped = {str(p.relative_to(shipped_yaml.ROOT)) for folder in
               ("detr_core/defaults", "search_spaces", "benchmarks")
               for p in (shipped_yaml.ROOT / folder).glob("*.yaml")}
    assert shipped == set(RECORDED) == set(RESOLVED)


@pytest.mark.parametrize("path", sorted(RECORDED))
def test_a_shipped_yaml_resolves_as_recorded(path: str) -> None:
    assert RESOLVED[path] == RECORDED[path]
