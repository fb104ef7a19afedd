"""YAML reading and writing shared by run configs and search spaces.

PyYAML follows YAML 1.1, where `2e-4` (no dot) is a *string*; learning rates are written that
way by everyone, so the loader here resolves every float spelling YAML 1.2 accepts. A key
written twice in one mapping is an error (PyYAML would silently keep the last one, turning a
searched range into a fixed value). Reading errors, encodings included
(`detr_core.files.text_files`), come back as `UserInputError` naming the file. Writing is atomic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from detr_core.files.atomic_files import write_text_atomic
from detr_core.files.errors import UserInputError
from detr_core.files.text_files import read_user_text


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


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice."""


def _construct_mapping_once(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """SafeLoader's mapping constructor, refusing a key given twice (merge keys `<<` aside)."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: SafeLoader reports it itself
            continue
        if first is not None:
            raise DuplicateKeyError(
                None, None, f"duplicate key {key!r} (first given at line {first})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_once)


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping; errors name the file."""
    path = Path(path)
    text = read_user_text(path)
    return parse_yaml_mapping(text, path)


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
    """Write `data` as block-style YAML, keys in insertion order, with an optional # header.

    Written atomically: a crash never leaves a truncated file."""
    write_text_atomic(Path(path), dumps_yaml(data, header))


def dumps_yaml(data: Any, header: str = "") -> str:
    """`data` as the text `dump_yaml` writes (for files written elsewhere than a local path)."""
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + text
    return text
