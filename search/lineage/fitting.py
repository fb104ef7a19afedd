"""Does an earlier trial fit a new search space? The rules of `--warm-start`, one key at a time.

An earlier trial counts for the new search only if the new search could have trained exactly
that run. For each key of the new space its value in the earlier trial (the value it trained
with, or, when its search did not have the key, the value its base run fixed) must be one the
new space can draw:

- a key the new space fixes: the same value;
- `choice`: one of the choices;
- a range: inside its bounds (inclusive), an integer for the integer distributions, a multiple
  of q for the quantized ones.

A key the earlier search had and the new one does not (neither searched nor fixed) must have
the value the new search's base run trains with. Each refusal is a short reason naming the key,
so the plan can say why trials were left out (one line per reason, with the values seen).

Pure functions on plain dicts: no Ray, no files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search.space.distributions import (
    describe_distribution,
    fits,
    format_value,
    is_distribution,
    is_number,
    same_value,
)

_MISSING = object()


def dotted_value(config: Mapping[str, Any], key: str) -> Any:
    """`a.b.c` of a nested run-config dict; `_MISSING` when any part is absent."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def is_missing(value: Any) -> bool:
    return value is _MISSING


def misfit_reason(key: str, value: Any, entry: Any) -> str:
    """Why `value` does not fit the space entry of `key`, in one phrase (no values listed)."""
    if not is_distribution(entry):
        return f"`{key}` differs from the new search's fixed value {format_value(entry)}"
    return f"`{key}` is not a value of {describe_distribution(entry)}"


def clamped(value: Any, entry: Any) -> Any:
    """A fitting value inside its range's bounds exactly (`fits` allows rounding noise at the
    bounds; Optuna's distributions do not)."""
    if not is_distribution(entry) or not is_number(value):
        return value
    name, args = next(iter(entry.items()))
    if name == "choice":
        return value
    return type(value)(min(max(value, args[0]), args[1]))


def fit_trial(
    trained: Mapping[str, Any], old_base: Mapping[str, Any], old_space: Mapping[str, Any],
    new_base: Mapping[str, Any], new_space: Mapping[str, Any],
) -> tuple[dict[str, Any] | None, tuple[str, Any] | None]:
    """(the trial's values of the new space's keys, None) or (None, (reason, value seen)).

    `trained` are the values the trial trained with in its own search (its space's fixed values
    and its sampled ones, as `search.trial.trial_values` gives them); `old_base` / `old_space`
    its search's base run and space, `new_base` / `new_space` the new search's.
    """
    values: dict[str, Any] = {}
    for key, entry in new_space.items():
        value = trained[key] if key in trained else dotted_value(old_base, key)
        if is_missing(value):
            return None, (f"`{key}` was not set in that search (its value there is the "
                          "run's default, unknown here)", None)
        if not fits(value, entry):
            return None, (misfit_reason(key, value, entry), value)
        values[key] = clamped(value, entry)
    for key in old_space:
        if key in new_space:
            continue
        value = trained.get(key, dotted_value(old_base, key))
        new_value = dotted_value(new_base, key)
        if is_missing(new_value) or not same_value(value, new_value):
            shown = ("the run's default (not known here)" if is_missing(new_value)
                     else format_value(new_value))
            return None, (f"`{key}` is not in the new space and the new base run trains "
                          f"{shown}", None if is_missing(value) else value)
    return values, None

