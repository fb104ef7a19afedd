"""The `space:` section of a search-space file: which run-config keys to search, and how.

Each key is a dotted run-config key (`training_args.learning_rate`); its type comes from
detr_core (`detr_core.config.config_keys.key_type`), so a distribution that cannot produce a valid
value for it (`uniform` for an integer field, anything numeric for a string) fails here, as
one line naming the file and the key. Path values are made absolute against the space file's
folder with detr_core's own rule.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from detr_core.config.config_keys import EXCLUSIVE_KEYS, key_type, strip_optional, touches
from detr_core.config.config_paths import resolve_path_value
from detr_core.files.errors import UserInputError
from search.space.distributions import (
    DISTRIBUTIONS,
    INT_DISTRIBUTIONS,
    accepts_mapping,
    check_distribution,
    check_number_type,
    is_distribution,
    numeric_kinds,
    searched_keys_of,
)
from search.space.experiment_section import as_mapping


def parse_space(space: Any, src: str, folder: Path) -> dict[str, Any]:
    """Check every key and distribution of `space:`; return it with path values absolute."""
    if space is None:
        raise UserInputError("missing: give at least one run-config key with a distribution",
                             source=src, key="space")
    space = as_mapping(space, src, "space")
    result: dict[str, Any] = {}
    for key, value in space.items():
        if not isinstance(key, str):
            raise UserInputError("keys must be strings (dotted run-config keys)", source=src,
                                 key=f"space.{key}")
        try:
            result[key] = _parse_entry(key, copy.deepcopy(value), folder)
        except UserInputError as exc:
            raise UserInputError(exc.problem, source=src, key=f"space.{key}") from None
    _check_overlaps(list(result), src)
    _check_exclusive_pairs(list(result), src)
    if not searched_keys_of(result):
        raise UserInputError("no key has a distribution: nothing to search", source=src,
                             key="space")
    return result


def _parse_entry(key: str, value: Any, folder: Path) -> Any:
    """One `key: value` of the space, checked; raises `UserInputError` (problem only used)."""
    if touches([key], ("data",)):
        # every trial trains on the data the driver prepared and checked once
        # (`search.trial.node_data`): a data key here would be ignored by the trials
        raise UserInputError("the data is prepared once for the whole search and every trial "
                             "trains on it: set it in base_overrides (one search per dataset)")
    annotation = key_type(key)
    if (isinstance(value, dict) and len(value) > 1 and any(k in DISTRIBUTIONS for k in value)
            and not accepts_mapping(annotation)):
        raise UserInputError(f"a distribution is one key with its arguments, e.g. "
                             f"{{loguniform: [low, high]}}; got keys "
                             f"{', '.join(map(str, value))}")
    if isinstance(value, list) and numeric_kinds(strip_optional(annotation)):
        raise UserInputError(f"a list is not a value of this numeric key (got {value!r}): a "
                             "range is {uniform: [low, high]} or {loguniform: [low, high]}, a "
                             "set of values {choice: [...]}")
    if (isinstance(value, dict) and len(value) == 1 and not is_distribution(value)
            and not accepts_mapping(annotation)):
        raise UserInputError(f"unknown distribution {next(iter(value))!r} (known: "
                             f"{', '.join(DISTRIBUTIONS)}; a plain value fixes the key)")
    if not is_distribution(value):
        check_number_type(value, annotation, key)
        return resolve_paths_in(key, value, folder)
    name, args = next(iter(value.items()))
    args = check_distribution(name, args, annotation, key)
    if (key == "training_args.warmup_steps" and name not in INT_DISTRIBUTIONS
            and name != "choice" and args[0] < 1 <= args[1]):
        raise UserInputError("range mixes a ratio (< 1) with a number of steps (>= 1): keep a "
                             "float range below 1, or use randint for steps")
    if name == "choice":
        args = [resolve_paths_in(key, v, folder) for v in args]
    return {name: args}


def resolve_paths_in(key: str, value: Any, folder: Path) -> Any:
    """Path strings within a value set at `key` made absolute (detr_core's path keys)."""
    from detr_core.config.config_paths import PATH_KEYS

    for path_key in PATH_KEYS:
        if path_key == key:
            return resolve_path_value(path_key, value, folder)
        if path_key.startswith(key + ".") and isinstance(value, dict):
            *parents, leaf = path_key[len(key) + 1:].split(".")
            node: Any = value
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and leaf in node:
                node[leaf] = resolve_path_value(path_key, node[leaf], folder)
    return value


def _check_overlaps(keys: list[str], src: str) -> None:
    """Reject `model` together with `model.image_size`: one would silently overwrite the other."""
    for key in keys:
        for other in keys:
            if other.startswith(key + "."):
                raise UserInputError(f"overlaps `space.{key}`: give one of them", source=src,
                                     key=f"space.{other}")


def _check_exclusive_pairs(keys: list[str], src: str) -> None:
    for side_a, side_b in EXCLUSIVE_KEYS:
        in_a = [k for k in keys if touches([k], side_a)]
        in_b = [k for k in keys if touches([k], side_b)]
        if in_a and in_b:
            raise UserInputError(f"excludes `space.{in_a[0]}`: give one of them", source=src,
                                 key=f"space.{in_b[0]}")
