"""A sub-package's public names, each imported from its module on first use (PEP 562).

Why: `search/run.py --dry-run` must not import Ray or torch, and a sub-package's public face
must not create import cycles; so every `search.<sub-package>/__init__.py` lists its names
and where they live, and `lazy_public_names` answers `from search.<sub-package> import NAME`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_public_names(package: str, home: dict[str, str],
                      namespace: dict[str, Any]) -> Callable[[str], Any]:
    """The module `__getattr__` of `package`: NAME -> `package.<home[NAME]>.NAME`, cached in
    the package's `namespace` after the first use."""

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home[name]}"), name)
        namespace[name] = value
        return value

    return __getattr__
