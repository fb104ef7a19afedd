"""The layers the sub-packages' `__init__` docstrings state, checked on every import.

Each `detr_core/<sub-package>/__init__.py` says which other sub-packages it may import
(`Imports: ...`). Here every `import` of every module (at the top or inside a function) is read
with `ast` and must keep to that: no import upwards, none of Ray or `search` anywhere in
detr_core, and across sub-packages (and from `search/` and `benchmarks/`) only through the
sub-package's public names (`from detr_core.config import RunConfig`), never a module behind it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "detr_core"
SUBPACKAGES = sorted(p.name for p in CORE.iterdir() if (p / "__init__.py").is_file())


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


def allowed_imports(subpackage: str) -> set[str]:
    """The sub-packages its `__init__` docstring lets it import."""
    doc = ast.get_docstring(ast.parse((CORE / subpackage / "__init__.py").read_text())) or ""
    line = re.search(r"^Imports:(.*?)(?:\n\n|\Z)", doc, re.S | re.M)
    assert line, f"detr_core/{subpackage}/__init__.py does not state its imports"
    return set(re.findall(r"`detr_core\.(\w+)`", line.group(1)))


def test_every_subpackage_states_its_layer_and_the_layers_form_an_order() -> None:
    allowed = {name: allowed_imports(name) for name in SUBPACKAGES}
    assert set(SUBPACKAGES) == {"config", "data", "evaluation", "files", "model", "training"}
    order = sorted(SUBPACKAGES, key=lambda name: len(allowed[name]))
    for index, name in enumerate(order):  # each may import exactly the ones below it
        assert allowed[name] == set(order[:index]), (name, allowed[name])


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_no_module_imports_upwards_or_behind_a_public_face(subpackage: str) -> None:
    allowed = allowed_imports(subpackage)
    problems = []
    for path in sorted((CORE / subpackage).rglob("*.py")):
        for line, module in imported_modules(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            top = module.split(".")[0]
            if top in ("ray", "search"):
                problems.append(f"{where} (detr_core never imports {top})")
            if top != "detr_core" or module == "detr_core":
                continue
            parts = module.split(".")
            other = parts[1]
            if other == subpackage:
                continue
            if other not in allowed:
                problems.append(f"{where} (not a layer below {subpackage})")
            elif len(parts) > 2:
                problems.append(f"{where} (import detr_core.{other}'s public names instead)")
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
