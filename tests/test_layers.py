"""The layers the sub-packages' `__init__` docstrings state, checked on every import.

Each `detr_core/<sub-package>/__init__.py` and `search/<sub-package>/__init__.py` says which
other sub-packages of its package it may import (`Imports: ...`). Here every `import` of every
module (at the top or inside a function) is read with `ast` and must keep to that: no import
upwards, none of Ray or `search` anywhere in detr_core, and no sub-package importing the entry
modules at the top (`detr_core/train.py`, `evaluate`, `predict`, `pretrain`; `search/run.py`,
`search/export.py`), which may import everything below them. Imports are plain: a name is
imported from the module that defines it.
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


def entry_modules(package: str) -> set[str]:
    """The modules at the top of `package` (its entry points), e.g. `detr_core.train`."""
    return {f"{package}.{p.stem}" for p in (ROOT / package).glob("*.py")
            if p.stem not in ("__init__", "__main__")}


@pytest.mark.parametrize(("package", "subpackage"), LAYERED,
                         ids=[f"{p}.{s}" for p, s in LAYERED])
def test_no_module_imports_upwards(package: str, subpackage: str) -> None:
    allowed = allowed_imports(package, subpackage)
    entries = entry_modules(package)
    problems = []
    for path in sorted((ROOT / package / subpackage).rglob("*.py")):
        for line, module in imported_modules(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            parts = module.split(".")
            if package == "detr_core" and parts[0] in ("ray", "search"):
                problems.append(f"{where} (detr_core never imports {parts[0]})")
            if ".".join(parts[:2]) in entries:
                problems.append(f"{where} (an entry module is above every sub-package)")
                continue
            if parts[0] != package or len(parts) < 2 or parts[1] == subpackage:
                continue
            if parts[1] not in allowed:
                problems.append(f"{where} (not a layer below {subpackage})")
    assert problems == []


def test_no_package_keeps_a_lazy_public_face() -> None:
    """Plain imports: a sub-package's `__init__` is its docstring, with nothing to resolve."""
    inits = [p for package in ("detr_core", "search") for p in (ROOT / package).rglob(
        "__init__.py") if p.parent != ROOT / package]
    assert inits
    for init in inits:
        body = ast.parse(init.read_text(encoding="utf-8")).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), init.relative_to(ROOT)


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["train", "evaluate", "predict", "pretrain"])
def test_each_entry_point_runs_as_a_module_and_as_its_console_script(entry: str) -> None:
    """`python -m detr_core.<entry> --help` (as the README says) and pyproject's script."""
    import subprocess
    import sys

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    run = subprocess.run([sys.executable, "-m", f"detr_core.{entry}", "--help"], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert "usage:" in run.stdout
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[f"detr-{entry}"] == f"detr_core.{entry}:main"


@pytest.mark.slow
def test_a_dry_run_never_imports_ray(tmp_path: Path) -> None:
    """`search/run.py --dry-run` checks and plans a search without loading Ray (it loads
    transformers, and torch with it: `training_args` are checked by building the real
    `TrainingArguments`)."""
    import subprocess
    import sys

    probe = ("import runpy, sys\n"
             "sys.argv = ['search/run.py', '--space', 'search_spaces/iou.yaml', '--dry-run',"
             f" '--storage', {str(tmp_path)!r}]\n"
             "try:\n    runpy.run_path('search/run.py', run_name='__main__')\n"
             "except SystemExit as stop:\n    assert stop.code in (0, None), stop.code\n"
             "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))\n")
    run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert "LOADED []" in run.stdout, run.stdout[-2000:]
