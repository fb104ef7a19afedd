"""User-input errors and the CLI guard that turns them into one line and exit code 2.

A user mistake (bad YAML, missing file, broken COCO record) must never end in a traceback:
library code raises `UserInputError` naming the file (`source`), the dotted key or record
(`key`) and what is wrong (`problem`); `exit_on_user_error` prints `source: key: problem` as a
single line on stderr and exits with 2.

The three parts are attributes, so a caller that validates on someone else's behalf (a search
space checking a run config) re-raises with its own file and a longer key (`relocated`)
instead of parsing message text.

`argparse` for the project's CLIs, with a bad flag reported like any other bad input.

argparse answers a wrong flag with its whole usage block and then the error; here it is one
line on stderr, `error: argument --num-samples: must be >= 1, got 0 (see search/run.py --help)`,
and exit code 2, the same shape as `detr_core.files.errors.exit_on_user_error` gives every other
user mistake.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

USER_ERROR_EXIT_CODE = 2

F = TypeVar("F", bound=Callable[..., object])


class UserInputError(ValueError):
    """A problem with what the user gave us: `source: key: problem`, one self-contained line.

    `UserInputError("file not found", source=path)` or, where no file or key applies, just
    `UserInputError("the message")`. `source` is a file (or another origin such as
    `trial 3`), `key` a dotted config key or a record (`image id 7`); either may be None.
    """

    def __init__(self, problem: str, *, source: str | Path | None = None,
                 key: str | None = None) -> None:
        self.problem = problem
        self.source = None if source is None else str(source)
        self.key = key
        super().__init__(": ".join(p for p in (self.source, key, problem) if p))

    def __reduce__(self) -> tuple:
        """Pickle with all three parts (a trial's error crosses process boundaries in Ray)."""
        return (_rebuild, (type(self), self.problem, self.source, self.key))

    def relocated(self, source: str | Path | None, key_prefix: str = "") -> UserInputError:
        """The same problem reported from another file, its key under `key_prefix`.

        `key_prefix="base_overrides"` turns key `model.image_size` into
        `base_overrides.model.image_size`; a missing key becomes the prefix itself.
        """
        parts = [p for p in (key_prefix, self.key) if p]
        return UserInputError(self.problem, source=source, key=".".join(parts) or None)


def describe_value(value: object) -> str:
    """A value as error messages show it: its type and a repr cut at 40 characters."""
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def _rebuild(cls: type[UserInputError], problem: str, source: str | None,
             key: str | None) -> UserInputError:
    return cls(problem, source=source, key=key)


@contextmanager
def errors_from(source: str | Path | None) -> Iterator[None]:
    """Report a `UserInputError` raised inside without a file of its own from `source`.

    Checks past a config file's own (an augmentation pipeline built, the model run) know the
    key but not the file; the CLI that read the file does (`--config run.yaml`).
    """
    try:
        yield
    except UserInputError as exc:
        if exc.source is not None or source is None:
            raise
        raise exc.relocated(source) from None


def exit_on_user_error(func: F) -> F:
    """Decorate a CLI `main`: a `UserInputError` becomes `error: <message>` and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except UserInputError as exc:
            message = " ".join(str(exc).split())
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(USER_ERROR_EXIT_CODE) from None

    return wrapper  # type: ignore[return-value]


class ArgumentParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors are one line (see the module docstring)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {' '.join(message.split())} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT_CODE)
