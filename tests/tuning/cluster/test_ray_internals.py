"""The Ray internals this project uses still exist (`search.cluster.ray_internals`): an upgrade
that removes one fails here, naming it, instead of breaking a resume silently."""

from __future__ import annotations

import pytest

from search.cluster import ray_internals


def test_every_private_ray_name_used_exists_in_the_installed_ray() -> None:
    import ray

    missing = ray_internals.missing_private_apis()
    assert missing == [], (f"Ray {ray.__version__} lacks {missing}: search/cluster/"
                           f"ray_internals.py was checked against {ray_internals.CHECKED_AGAINST}")


def test_a_name_ray_no_longer_has_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_internals, "PRIVATE_NAMES", (
        ("ray.tune.tuner", "Tuner._local_tuner"),
        ("ray.tune.tuner", "Tuner._gone_in_a_later_ray"),
        ("ray.tune.not_a_module", "Anything")))
    assert ray_internals.missing_private_apis() == [
        "ray.tune.tuner.Tuner._gone_in_a_later_ray", "ray.tune.not_a_module (module)"]


def test_only_the_fence_module_touches_ray_privates() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    names = ("._local_tuner", "_TrainingResult", "_TrainingRunMetadata", "._checkpoint_results",
             "._latest_checkpoint_result", "trial_data", "._ot_study", "._ot_trials",
             "._completed_trials", "_setup_study")
    users = {str(p.relative_to(root)) for p in (root / "search").rglob("*.py")
             if any(name in p.read_text() for name in names)}
    assert users == {"search/cluster/ray_internals.py"}
