"""The layers of CONTRIBUTING.md: which part of the package may import which, and a core without Qt.

Every ``import`` in the package (at module level or inside functions) is read
with ``ast`` and checked against the table below; a second test imports every
core module in a fresh interpreter where Qt, napari and magicgui cannot be imported.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "napari_clipdenoise"

#: Part of the package -> the parts it may import (besides itself). Parts are top-level modules or subpackages.
BASE = {"_lazy", "_torch", "_version", "errors", "jobs", "unit_scale", "__init__"}
NUMERICS = BASE | {"noise", "metrics", "baselines", "montage"}
ALLOWED = {
    "_lazy": set(),
    "_torch": set(),
    "_version": set(),
    "__init__": BASE,  # lazy exports name core modules by string only
    "errors": set(),
    "jobs": {"errors"},
    "unit_scale": set(),
    "noise": BASE,
    "metrics": BASE,
    "baselines": NUMERICS,
    "montage": set(),
    "model": BASE,
    "inference": BASE | {"model"},
    "formats": BASE | {"inference"},
    "comparison": NUMERICS | {"model", "inference"},
    "training": NUMERICS | {"model", "inference", "formats"},
    "adaptation": NUMERICS | {"model", "inference", "training"},
    "sample_data": NUMERICS,
    "batch": NUMERICS | {"model", "inference", "formats", "distributed"},
    "distributed": NUMERICS | {"model", "inference", "formats"},
    "cli": NUMERICS | {"model", "inference", "formats", "batch", "distributed", "training", "adaptation"},
    "napari_functions": NUMERICS | {"model", "inference"},
    "readers": BASE | {"formats"},
    "widgets": NUMERICS | {"model", "inference", "formats", "comparison", "distributed", "sample_data", "adaptation"},
}
#: Parts that make up the library core: none of them may import Qt, napari or magicgui.
CORE = ("errors", "jobs", "unit_scale", "noise", "metrics", "baselines", "montage", "model", "inference", "formats",
        "comparison", "training", "adaptation", "batch", "distributed", "cli")  # fmt: skip
GUI_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy")


def _part(module: str) -> str:
    """``napari_clipdenoise.model.network`` -> ``model``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports: (line, absolute module name)."""
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(relative.parts if path.name == "__init__.py" else relative.parts[:-1])
    if path.name == "__init__.py":
        package = package[:-1] if package[-1] == "__init__" else package
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from .. import x: x is a module, or a name defined in the package
                    folder = PACKAGE.parent.joinpath(*name.split("."))
                    for alias in node.names:
                        is_module = (folder / f"{alias.name}.py").is_file() or (folder / alias.name).is_dir()
                        found.append((node.lineno, f"{name}.{alias.name}" if is_module else name))
                    continue
            else:
                name = node.module
            found.append((node.lineno, name))
    return found


def _sources():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "_version.py")


def test_every_part_imports_only_the_layers_below_it():
    problems = []
    for path in _sources():
        own = _part(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        assert own in ALLOWED, f"{path}: add its part {own!r} to the layer table (and CONTRIBUTING.md)"
        for line, module in _imports(path):
            if not module.startswith("napari_clipdenoise"):
                if own in CORE and module.split(".")[0] in GUI_MODULES:
                    problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} (core) imports {module}")
                continue
            target = _part(module)
            if target != own and target not in ALLOWED[own]:
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}) imports {module} ({target})")
    assert not problems, "imports against the layers of CONTRIBUTING.md:\n" + "\n".join(problems)


def test_the_table_knows_no_part_that_does_not_exist():
    parts = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if p.suffix == ".py" or (p / "__init__.py").is_file()
    }
    assert set(ALLOWED) - {"__init__"} <= parts | {"_version"}


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {gui!r}:
            raise ImportError(f"{{name}} is blocked: the core must not import it")
        return None
sys.meta_path.insert(0, Block())
import importlib, pkgutil
import napari_clipdenoise
modules = []
for part in {core!r}:
    modules.append("napari_clipdenoise." + part)
    package = importlib.import_module("napari_clipdenoise." + part)
    if hasattr(package, "__path__"):
        modules += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
for name in modules:
    if name.endswith("__main__"):
        continue
    importlib.import_module(name)
print(len(modules), "core modules imported")
"""


@pytest.mark.slow
def test_the_core_imports_without_qt_napari_or_magicgui():
    code = BLOCKER.format(gui=set(GUI_MODULES), core=CORE)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "core modules imported" in result.stdout
