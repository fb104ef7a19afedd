"""The layers the sub-packages' `__init__` docstrings state, checked on every import.

Each `detr_core/<sub-package>/__init__.py` and `search/<sub-package>/__init__.py` says which
other sub-packages of its package it may import (`Imports: ...`). Here every `import` of every
module (at the top or inside a function) is read with `ast` and must keep to that: no import
upwards, none of Ray or `search` anywhere in detr_core, and across sub-packages (and from
`search/` and `benchmarks/` into detr_core) only through the sub-package's public names
(`from detr_core.config import RunConfig`), never a module behind it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "detr_core"


def subpackages(package: str) -> list[str]:
    return sorted(p.name for p in (ROOT / package).iterdir() if (p / "__init__.py").is_file())


SUBPACKAGES = subpackages("detr_core")
SEARCH_SUBPACKAGES = subpackages("search")
LAYERED = [("detr_core", s) for s in SUBPACKAGES] + [("search", s) for s in SEARCH_SUBPACKAGES]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in a file, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from detr_core import train` imports the module detr_core.train
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if node.module == "detr_core"
                      and (CORE / f"{alias.name}.py").is_file()]
    return found


def allowed_imports(package: str, subpackage: str) -> set[str]:
    """The sub-packages of `package` its `__init__` docstring lets it import."""
    init = ROOT / package / subpackage / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    line = re.search(r"^Imports:(.*?)(?:\n\n|\Z)", doc, re.S | re.M)
    assert line, f"{init.relative_to(ROOT)} does not state its imports"
    return set(re.findall(rf"`{package}\.(\w+)`", line.group(1)))


@pytest.mark.parametrize(("package", "expected"), [
    ("detr_core", {"config", "data", "evaluation", "files", "model", "training"}),
    ("search", {"cluster", "lineage", "results", "resume", "running", "space", "store",
                "trial"}),
])
def test_every_subpackage_states_its_layer_and_the_layers_form_an_order(
        package: str, expected: set[str]) -> None:
    names = subpackages(package)
    assert set(names) == expected
    allowed = {name: allowed_imports(package, name) for name in names}
    order = sorted(names, key=lambda name: len(allowed[name]))
    for index, name in enumerate(order):  # each may import exactly the ones below it
        assert allowed[name] == set(order[:index]), (name, allowed[name])


@pytest.mark.parametrize(("package", "subpackage"), LAYERED,
                         ids=[f"{p}.{s}" for p, s in LAYERED])
def test_no_module_imports_upwards_or_behind_a_public_face(package: str,
                                                           subpackage: str) -> None:
    allowed = allowed_imports(package, subpackage)
    problems = []
    for path in sorted((ROOT / package / subpackage).rglob("*.py")):
        for line, module in imported_modules(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            parts = module.split(".")
            if package == "detr_core" and parts[0] in ("ray", "search"):
                problems.append(f"{where} (detr_core never imports {parts[0]})")
            if package == "search" and parts[0] == "detr_core" and len(parts) > 2:
                problems.append(f"{where} (import detr_core.{parts[1]}'s public names instead)")
            if parts[0] != package or len(parts) < 2 or parts[1] == subpackage:
                continue
            other = parts[1]
            if other not in allowed:
                problems.append(f"{where} (not a layer below {subpackage})")
            elif len(parts) > 2:
                problems.append(f"{where} (import {package}.{other}'s public names instead)")
    assert problems == []


def test_search_and_benchmarks_use_detr_core_public_names_only() -> None:
    """The short entry-point paths (`detr_core.train`, ...) are modules of their own."""
    shims = {f"detr_core.{p.stem}" for p in CORE.glob("*.py") if p.stem not in ("__init__",
                                                                               "__main__")}
    problems = []
    for folder in ("search", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, module in imported_modules(path):
                parts = module.split(".")
                if parts[0] == "detr_core" and len(parts) > 2 and module not in shims:
                    problems.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert problems == []


def test_old_entry_points_are_the_modules_themselves() -> None:
    import detr_core.evaluate
    import detr_core.evaluation.evaluate
    import detr_core.evaluation.predict
    import detr_core.predict
    import detr_core.pretrain
    import detr_core.train
    import detr_core.training.pretrain
    import detr_core.training.train

    assert detr_core.train is detr_core.training.train
    assert detr_core.evaluate is detr_core.evaluation.evaluate
    assert detr_core.predict is detr_core.evaluation.predict
    assert detr_core.pretrain is detr_core.training.pretrain
    assert callable(detr_core.train.train_run) and callable(detr_core.train.main)
