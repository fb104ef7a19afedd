"""User-input errors and the CLI guard that turns them into one line and exit code 2.

A user mistake (bad YAML, missing file, broken COCO record) must never end in a traceback:
library code raises `UserInputError` with a message that names the file, key or record;
`exit_on_user_error` prints that message as a single line on stderr and exits with 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

USER_ERROR_EXIT_CODE = 2

F = TypeVar("F", bound=Callable[..., object])


class UserInputError(ValueError):
    """A problem with what the user gave us; the message is one self-contained line."""


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
