"""Every shipped YAML resolved to what the code makes of it: the snapshot issue 33 checks.

A run config resolves to its `run_config_to_dict`; a search-space file to its `SearchSpec`
(as `search_spec.yaml` holds it) with its base as a run config and every searched key's
distribution; a benchmark settings file to what its benchmark builds from it. Paths inside the
repository are written relative to it, so the snapshot holds on any clone.

Regenerate (only when a change of resolution is meant): `python tests/shipped_yaml.py`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "tests" / "snapshots" / "shipped_yaml.json"
RUN_CONFIGS = [*sorted((ROOT / "detr_core" / "defaults").glob("*.yaml")),
               ROOT / "benchmarks" / "gpu_fp16.yaml"]
SPACES = [*sorted((ROOT / "search_spaces").glob("*.yaml")),
          ROOT / "benchmarks" / "detr_grid_space.yaml", ROOT / "benchmarks" / "gpu_space.yaml",
          ROOT / "benchmarks" / "gpu_ddp_space.yaml"]
GRIDS = sorted((ROOT / "benchmarks").glob("learning_curves*.yaml"))
SETTINGS = [ROOT / "benchmarks" / "search_efficiency.yaml"]
CANDIDATES = ROOT / "benchmarks" / "search_defaults.yaml"
WARM_START = ROOT / "benchmarks" / "warm_start.yaml"


def plain(value: Any) -> Any:
    """JSON-able, with this clone's root and temporary folders written as placeholders."""
    text = json.dumps(value, default=str, sort_keys=True)
    text = text.replace(str(ROOT), "<root>")
    return json.loads(text)


def run_config(path: Path) -> dict[str, Any]:
    from detr_core.config.run_config import load_run_config, run_config_to_dict

    return run_config_to_dict(load_run_config(path))


def spec_dict(spec: Any) -> dict[str, Any]:
    from detr_core.config.run_config import run_config_from_dict, run_config_to_dict
    from search.space.distributions import describe_distribution, is_distribution

    resolved = spec.to_yaml_dict()
    resolved.pop("source")
    resolved["base_run_config"] = run_config_to_dict(run_config_from_dict(spec.base))
    resolved["distributions"] = {key: describe_distribution(value)
                                 for key, value in spec.space.items() if is_distribution(value)}
    return resolved


def search_spec(path: Path) -> dict[str, Any]:
    from search.space.spec import load_search_spec

    return spec_dict(load_search_spec(path))


def grid(path: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks import each other as scripts
    import learning_curves

    raw = learning_curves.load_grid(path)
    return {"grid": raw, "points": learning_curves.grid_points(raw),
            "base": learning_curves.base_run(raw["space_file"])}


def settings(path: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks import each other as scripts
    import search_efficiency

    spec, _ = search_efficiency.load_settings(path)
    return spec_dict(spec)


def candidates(path: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks import each other as scripts
    import search_efficiency
    import tune_search_defaults

    from detr_core.files.file_io import load_yaml_mapping

    bench = load_yaml_mapping(search_efficiency.CONFIG)
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for candidate in load_yaml_mapping(path)["candidates"]:
            config = tune_search_defaults.candidate_config(bench, candidate, Path(folder))
            out[candidate["name"]] = spec_dict(search_efficiency.load_settings(config)[0])
    return out


def warm_start(path: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks import each other as scripts
    import warm_start as bench

    from detr_core.files.file_io import load_yaml_mapping

    config = load_yaml_mapping(path)
    return {key: spec_dict(bench.settings(config, config[key], key))
            for key in config if key.endswith("_space")}


def resolve_all() -> dict[str, Any]:
    """{repository-relative path: its resolution} for every shipped YAML."""
    out: dict[str, Any] = {}
    for paths, resolve in ((RUN_CONFIGS, run_config), (SPACES, search_spec), (GRIDS, grid),
                           (SETTINGS, settings), ([CANDIDATES], candidates),
                           ([WARM_START], warm_start)):
        for path in paths:
            out[str(path.relative_to(ROOT))] = resolve(path)
    return plain(out)


if __name__ == "__main__":
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(json.dumps(resolve_all(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT.relative_to(ROOT)}")
