"""YAML reading and writing shared by run configs and search spaces.

PyYAML follows YAML 1.1, where `2e-4` (no dot) is a *string*; learning rates are written that
way by everyone, so the loader here resolves every float spelling YAML 1.2 accepts. Reading
errors come back as `UserInputError` naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from detr_core.errors import UserInputError


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-4`, `5E3` and `.5` as floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError("file not found", source=path)
    return parse_yaml_mapping(path.read_text(encoding="utf-8"), path)


def parse_yaml_mapping(text: str, source: str | Path) -> dict[str, Any]:
    """YAML text whose top level must be a mapping (read from anywhere); errors name `source`."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserInputError(f"not valid YAML{where}: {problem}", source=source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserInputError(f"top level must be a mapping, got {type(data).__name__}",
                             source=source)
    return data


def loads_yaml(text: str) -> Any:
    """Parse YAML text with the same float rules as `load_yaml_mapping`."""
    return yaml.load(text, Loader=_Loader)


def dump_yaml(data: Any, path: str | Path, header: str = "") -> None:
    """Write `data` as block-style YAML, keys in insertion order, with an optional # header."""
    Path(path).write_text(dumps_yaml(data, header), encoding="utf-8")


def dumps_yaml(data: Any, header: str = "") -> str:
    """`data` as the text `dump_yaml` writes (for files written elsewhere than a local path)."""
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + text
    return text
