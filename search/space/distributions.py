"""The distributions a search-space file may draw a key from, their rules and their rounding.

A searched key is `{name: args}` (one key; anything else is a value fixed for every trial):
`choice: [v1, v2, ...]`; a float from `uniform` or `loguniform` (log scale, low > 0)
`[low, high]`; an integer from `randint` or `lograndint` (low >= 1) `[low, high]`; a multiple of
q from `quniform`, `qloguniform` (loguniform rounded) or `qrandint` `[low, high, q]`, whose
bounds must be multiples of q. Every upper bound is INCLUSIVE, integers included.
Pure functions: no Ray, no files.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from detr_core.config.run_config import strict_adapter, strip_optional
from detr_core.files.errors import UserInputError, describe_value

FLOAT_DISTRIBUTIONS = ("uniform", "quniform", "loguniform", "qloguniform")
INT_DISTRIBUTIONS = ("randint", "qrandint", "lograndint")
DISTRIBUTIONS = ("choice", *FLOAT_DISTRIBUTIONS, *INT_DISTRIBUTIONS)
LOG_DISTRIBUTIONS = ("loguniform", "qloguniform", "lograndint")
QUANTIZED_DISTRIBUTIONS = ("quniform", "qloguniform", "qrandint")


def is_distribution(value: Any) -> bool:
    """True for a `{dist_name: args}` mapping (one key, a known distribution name)."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS


def searched_keys_of(space: dict) -> list[str]:
    """Keys of a space mapping drawn from a distribution, in file order."""
    return [k for k, v in space.items() if is_distribution(v)]


def fixed_values_of(space: dict) -> dict[str, Any]:
    """Keys of a space mapping given a plain value: the same for every trial."""
    return {k: v for k, v in space.items() if not is_distribution(v)}


def log_scale_keys_of(space: dict) -> set[str]:
    """Keys of a space mapping drawn on a log scale."""
    return {k for k in searched_keys_of(space) if next(iter(space[k])) in LOG_DISTRIBUTIONS}


def candidate_values(dist: dict) -> list[Any]:
    """Values that stand for a distribution when checking it: every choice, else both ends."""
    name, args = next(iter(dist.items()))
    return list(args) if name == "choice" else [args[0], args[1]]


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def quantize_params(space: dict, params: dict) -> dict:
    """Round each value of a quantized key to its q, within the bounds: Optuna drops the q of
    `qloguniform`, and its float steps drift (`0.30000000000000004` for `0.3`)."""
    result = dict(params)
    for key, value in params.items():
        dist = space.get(key)
        if not (is_distribution(dist) and is_number(value)):
            continue
        name, args = next(iter(dist.items()))
        if name not in QUANTIZED_DISTRIBUTIONS:
            continue
        low, high, q = args
        snapped = min(max(round(value / q) * q, low), high)
        result[key] = int(snapped) if name == "qrandint" else round(float(snapped), 12)
    return result


def check_distribution(name: str, args: Any, annotation: Any, key: str) -> list:
    """Validate `{name: args}` for a key of type `annotation` (`UserInputError(key=key)`
    naming what is wrong); return args (floats as floats)."""
    def fail(problem: str) -> typing.NoReturn:
        raise UserInputError(problem, key=key)

    if name == "choice":
        if not isinstance(args, list) or not args:
            fail("choice needs a non-empty list of values, e.g. {choice: [a, b]}")
        for i, value in enumerate(args):
            if any(type(v) is type(value) and v == value for v in args[:i]):
                fail(f"choice value {value!r} is listed twice")
            check_number_type(value, annotation, key)
        return list(args)
    quantized = name in QUANTIZED_DISTRIBUTIONS
    shape = "[low, high, q]" if quantized else "[low, high]"
    if not isinstance(args, list) or len(args) != (3 if quantized else 2):
        fail(f"{name} takes {shape}, got {describe_value(args)}")
    is_int = name in INT_DISTRIBUTIONS
    for arg in args:
        if not is_number(arg) or not math.isfinite(arg):
            fail(f"{name} takes numbers {shape}, got {describe_value(arg)}")
        if is_int and not isinstance(arg, int):
            fail(f"{name} takes integers {shape}, got {describe_value(arg)}")
    low, high = args[0], args[1]
    if low >= high:
        fail(f"{name}: low ({low}) must be below high ({high})")
    if name in LOG_DISTRIBUTIONS and low <= 0:
        fail(f"{name}: low must be > 0 on a log scale, got {low}")
    if quantized:
        q = args[2]
        if q <= 0:
            fail(f"{name}: q must be > 0, got {q}")
        for bound in (low, high):
            if not _is_multiple(bound, q):
                fail(f"{name}: bound {bound} is not a multiple of q={q}")
    kinds = numeric_kinds(strip_optional(annotation))
    draws = "int" if is_int else "float"
    if kinds is not None and draws not in kinds:
        if not kinds:
            fail(f"{name} draws numbers, but this key takes {_type_words(annotation)}; "
                 "use choice")
        fail(f"{name} draws floats, but this key takes integers: use randint, qrandint or "
             "lograndint")
    return [float(a) for a in args] if not is_int else list(args)


def check_number_type(value: Any, annotation: Any, key: str) -> None:
    """A float for an integer-only field is refused (TrainingArguments does not check it)."""
    if isinstance(value, float) and numeric_kinds(strip_optional(annotation)) == {"int"}:
        raise UserInputError(f"expected an integer, got {describe_value(value)}", key=key)


def numeric_kinds(tp: Any) -> set[str] | None:
    """Which of {"int", "float"} a key's type (its schema annotation, or `TrainingArguments`')
    takes, as pydantic judges it strictly; None when the annotation does not say."""
    if tp is Any or isinstance(tp, str | typing.TypeVar):
        return None
    kinds = set()
    for kind, probe in (("int", 3), ("float", 0.5)):
        try:
            strict_adapter(tp).validate_python(probe)
        except ValidationError:
            continue
        except Exception:  # a type pydantic cannot build a validator for: no verdict
            return None
        kinds.add(kind)
    return kinds


def accepts_mapping(tp: Any) -> bool:
    """True when a field can hold a mapping (so `{key: value}` there is a value, not a typo)."""
    if tp is Any or isinstance(tp, str | typing.TypeVar) or tp is dict:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(accepts_mapping(member) for member in typing.get_args(tp))
    return origin is dict or (isinstance(tp, type) and issubclass(tp, BaseModel))


def _type_words(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(v) for v in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _is_multiple(value: float, q: float) -> bool:
    ratio = value / q
    return math.isclose(ratio, round(ratio), rel_tol=1e-9, abs_tol=1e-9)


def format_number(value: float) -> str:
    """Compact number: integers without a dot, others in %g."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_value(value: Any) -> str:
    """A plain value as YAML would write it (true / false / null, compact numbers)."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return format_number(value) if isinstance(value, float) else str(value)


def describe_distribution(dist: dict) -> str:
    """One distribution in words, e.g. `randint 2..6 (inclusive)`."""
    name, args = next(iter(dist.items()))
    if name == "choice":
        return "choice " + " | ".join(format_value(v) for v in args)
    low, high = format_number(args[0]), format_number(args[1])
    step = f" step {format_number(args[2])}" if name in QUANTIZED_DISTRIBUTIONS else ""
    log = name in LOG_DISTRIBUTIONS
    if name in INT_DISTRIBUTIONS:
        return f"{name} {low}..{high}{step} (inclusive{', log scale' if log else ''})"
    return f"{name} [{low}, {high}]{step}{' (log scale)' if log else ''}"


def same_value(a: Any, b: Any) -> bool:
    """Equal as YAML values: `True` is not `1`, `1` is `1.0`, floats within 1e-12 relative."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if is_number(a) and is_number(b):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def fits(value: Any, entry: Any) -> bool:
    """True when `value` is a value the space entry (a distribution or a fixed value) draws."""
    if not is_distribution(entry):
        return same_value(value, entry)
    name, args = next(iter(entry.items()))
    if name == "choice":
        return any(same_value(value, choice) for choice in args)
    if not is_number(value) or not math.isfinite(value):
        return False
    low, high = args[0], args[1]
    if not (low - 1e-12 * abs(low) <= value <= high + 1e-12 * abs(high)):
        return False
    if name in INT_DISTRIBUTIONS and float(value) != int(value):
        return False
    return name not in QUANTIZED_DISTRIBUTIONS or _is_multiple(value - low, args[2])
