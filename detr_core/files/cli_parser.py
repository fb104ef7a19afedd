"""`argparse` for the project's CLIs, with a bad flag reported like any other bad input.

argparse answers a wrong flag with its whole usage block and then the error; here it is one
line on stderr, `error: argument --num-samples: must be >= 1, got 0 (see search/run.py --help)`,
and exit code 2, the same shape as `detr_core.files.errors.exit_on_user_error` gives every other
user mistake.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from detr_core.files.errors import USER_ERROR_EXIT_CODE


class ArgumentParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors are one line (see the module docstring)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {' '.join(message.split())} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT_CODE)
