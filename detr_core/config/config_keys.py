"""Which dotted keys a run config has, and the type each one takes.

A search space (or any caller that sets values by dotted key, `training_args.learning_rate`)
asks here instead of keeping its own copy of the schema: the `RunConfig` dataclasses answer
for their fields, `transformers.TrainingArguments` for `training_args.<field>` (with the
fields detr_core owns refused, see `detr_core.config.training_args`), `DetrConfig` for
`model.config_overrides.<field>`. Keys that exclude each other are listed once here as well.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterable
from typing import Any

from detr_core.config.run_config import RunConfig
from detr_core.files.errors import UserInputError

#: Pairs of run-config keys that exclude each other (`_check_semantics` and
#: `normalise_training_args` refuse both): setting a key of one side drops the other side.
EXCLUSIVE_KEYS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("model.preset",), ("model.checkpoint",)),
    (("data.synthetic",), ("data.train", "data.val", "data.test")),
    (("training_args.warmup_steps",), ("training_args.warmup_ratio",)),
)


def strip_optional(tp: Any) -> Any:
    """`X | None` -> X (only for a single non-None member)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return tp


def key_type(dotted: str) -> Any:
    """Type annotation of the run-config key `dotted`.

    Raises `UserInputError` with `key=dotted` when the key does not exist or may not be set.
    """
    from detr_core.config.training_args import training_arg_type

    parts = dotted.split(".")
    if any(not p for p in parts):
        raise UserInputError("empty part in dotted key", key=dotted)
    tp: Any = RunConfig
    for i, part in enumerate(parts):
        prefix = ".".join(parts[:i])
        rest = parts[i + 1:]
        tp = strip_optional(tp)
        if prefix == "training_args":
            return _leaf(training_arg_type(part), dotted, rest)
        if prefix == "model.config_overrides":
            return _leaf(config_override_type(part), dotted, rest)
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            if part not in hints:
                where = f"under `{prefix}`" if prefix else "at the top level"
                raise UserInputError(f"unknown run-config key (known {where}: "
                                     f"{', '.join(sorted(hints))})", key=dotted)
            tp = hints[part]
            continue
        if tp is dict or typing.get_origin(tp) is dict:
            return Any
        raise UserInputError(f"`{prefix}` is not a mapping, it has no key `{part}`", key=dotted)
    return tp


def _leaf(tp: Any, dotted: str, rest: list[str]) -> Any:
    """`tp` when `dotted` ends here; its leaf takes no sub-keys."""
    if rest:
        leaf = dotted.rsplit(".", len(rest))[0]
        raise UserInputError(f"`{leaf}` has no sub-keys to set", key=dotted)
    return tp


@functools.lru_cache(maxsize=1)
def detr_config_fields() -> frozenset[str]:
    """The config fields `model.config_overrides` may set: those of any supported family's
    config class (which family a run has is known only once its checkpoint is read; the model
    builder then checks the key against that family's class)."""
    from transformers import AutoConfig

    from detr_core.config.run_config import FamilyName

    fields: set[str] = {"num_labels"}
    for model_type in typing.get_args(FamilyName):
        fields.update(f.name for f in dataclasses.fields(type(AutoConfig.for_model(model_type))))
    return frozenset(fields)


def config_override_type(name: str) -> Any:
    """`model.config_overrides.<name>` must be a field of a DETR-family config class (any
    value type)."""
    if name not in detr_config_fields():
        raise UserInputError("not a config field of any supported DETR-family model",
                             key=f"model.config_overrides.{name}")
    return Any


def is_section(dotted: str) -> bool:
    """True when `dotted` names a nested section or a free mapping (`training_args`...)."""
    try:
        tp = strip_optional(key_type(dotted))
    except UserInputError:
        return False
    return dataclasses.is_dataclass(tp) or tp is dict or typing.get_origin(tp) is dict


def touches(keys: Iterable[str], prefixes: Iterable[str]) -> bool:
    """True when a key in `keys` is one of `prefixes` or lies below one."""
    prefixes = tuple(prefixes)
    return any(k == p or k.startswith(p + ".") for k in keys for p in prefixes)
