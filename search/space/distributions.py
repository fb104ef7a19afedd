"""The distributions a space key may be drawn from (`{name: args}`, one key; anything else is a
fixed value), their rules and their rounding. `choice: [v1, ...]`; `uniform`, `loguniform`,
`randint`, `lograndint`: `[low, high]`; `quniform`, `qloguniform`, `qrandint`: `[low, high, q]`
with bounds that are multiples of q. Every upper bound is INCLUSIVE. No Ray, no files.
"""

from __future__ import annotations

import functools
import math
import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

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
        if not (is_distribution(dist) and next(iter(dist)) in QUANTIZED_DISTRIBUTIONS
                and is_number(value)):
            continue
        name, (low, high, q) = next(iter(dist.items()))
        snapped = min(max(round(value / q) * q, low), high)
        result[key] = int(snapped) if name == "qrandint" else round(float(snapped), 12)
    return result


@functools.cache
def args_type(name: str) -> TypeAdapter:
    """The args' grammar of distribution `name`, strict: `choice` a non-empty list; the others
    `[low, high]` or, quantized, `[low, high, q]` of finite numbers (integers for the int ones)."""
    if name == "choice":
        shape: Any = Annotated[list[Any], Field(min_length=1)]
    else:
        length = 3 if name in QUANTIZED_DISTRIBUTIONS else 2
        item = int if name in INT_DISTRIBUTIONS else Annotated[float, Field(allow_inf_nan=False)]
        shape = Annotated[list[item], Field(min_length=length, max_length=length)]
    return TypeAdapter(shape, config=ConfigDict(strict=True))


def check_distribution(name: str, args: Any, annotation: Any, key: str) -> list:
    """`{name: args}` checked for a key of type `annotation`; its args (floats as floats)."""
    def fail(problem: str) -> typing.NoReturn:
        raise UserInputError(problem, key=key)

    quantized, is_int = name in QUANTIZED_DISTRIBUTIONS, name in INT_DISTRIBUTIONS
    shape = "[low, high, q]" if quantized else "[low, high]"
    try:
        values = args_type(name).validate_python(args)
    except ValidationError as exc:
        errors = exc.errors()
        error = next((e for e in errors if not e["loc"]), errors[0])  # the shape's first
        if name == "choice":
            fail("choice needs a non-empty list of values, e.g. {choice: [a, b]}")
        if not error["loc"]:  # the list itself
            fail(f"{name} takes {shape}, got {describe_value(args)}")
        fail(f"{name} takes {'integers' if is_int else 'numbers'} {shape}, got "
             f"{describe_value(error['input'])}")
    if name == "choice":
        for i, value in enumerate(values):
            if any(type(v) is type(value) and v == value for v in values[:i]):
                fail(f"choice value {value!r} is listed twice")
            check_number_type(value, annotation, key)
        return values
    low, high = args[0], args[1]  # as written, for the messages
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
    if kinds is not None and ("int" if is_int else "float") not in kinds:
        if not kinds:
            fail(f"{name} draws numbers, but this key takes {_type_words(annotation)}; "
                 "use choice")
        fail(f"{name} draws floats, but this key takes integers: use randint, qrandint or "
             "lograndint")
    return values


def check_number_type(value: Any, annotation: Any, key: str) -> None:
    """A float for an integer-only field is refused (TrainingArguments does not check it)."""
    if isinstance(value, float) and numeric_kinds(strip_optional(annotation)) == {"int"}:
        raise UserInputError(f"expected an integer, got {describe_value(value)}", key=key)


def numeric_kinds(tp: Any) -> set[str] | None:
    """Which of {"int", "float"} a key's type takes, judged strictly by pydantic; None when
    the annotation does not say."""
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
