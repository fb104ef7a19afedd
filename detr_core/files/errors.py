"""User-input errors: one line on stderr and exit code 2, never a traceback.

`UserInputError` keeps its file, key and problem apart, so a caller validating on someone else's
behalf (a search space checking a run config) re-raises it from its own file (`relocated`).
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
    """`source: key: problem` as one line; `source` a file or another origin (`trial 3`), `key` a
    dotted config key or a record (`image id 7`); either may be None."""

    def __init__(self, problem: str, *, source: str | Path | None = None,
                 key: str | None = None) -> None:
        self.problem = problem
        self.source = None if source is None else str(source)
        self.key = key
        super().__init__(": ".join(p for p in (self.source, key, problem) if p))

    def __reduce__(self) -> tuple:
        """Pickle with all three parts (a trial's error crosses process boundaries in Ray)."""
        return (functools.partial(type(self), source=self.source, key=self.key), (self.problem,))

    def relocated(self, source: str | Path | None, key_prefix: str = "") -> UserInputError:
        """The same problem from another file, its key under `key_prefix` (`model.image_size`
        -> `base_overrides.model.image_size`; a missing key becomes the prefix itself)."""
        key = ".".join(p for p in (key_prefix, self.key) if p) or None
        return UserInputError(self.problem, source=source, key=key)


def describe_value(value: object) -> str:
    """A value as error messages show it: its type and a repr cut at 40 characters."""
    text = repr(value)
    return f"{type(value).__name__} {text[:37] + '...' if len(text) > 40 else text}"


@contextmanager
def errors_from(source: str | Path | None) -> Iterator[None]:
    """Report a `UserInputError` raised inside without a file of its own from `source`."""
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
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
            raise SystemExit(USER_ERROR_EXIT_CODE) from None

    return wrapper  # type: ignore[return-value]


class ArgumentParser(argparse.ArgumentParser):
    """`error: argument --num-samples: must be >= 1, got 0 (see search/run.py --help)`."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {' '.join(message.split())} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT_CODE)
