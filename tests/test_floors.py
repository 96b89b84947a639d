"""The floors of docs/architecture.md, held by reading every module's imports (nothing is imported to check them).

decoding (1) < context_pruner, graph_pruning, nl2sql (2) < eval (3) < app (4): a package imports only from floors
below its own, so the three floor-2 cores never import each other, no core imports `eval` or `app`, and `eval` never
imports `app`. Every import counts, wherever it sits: at the top, inside a function, under `if TYPE_CHECKING:`, and
a lazy one named by a string (`importlib.import_module("prunekit.x")`, a PEP 562 `_LAZY` table), since each is a
dependency all the same. And the code installs under one name: a bare `import app` or `from eval import ...` would
reach a user's own `app` or `eval` (tests/test_packaging.py shows one wins), so every import carries `prunekit.`.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = "prunekit"
FLOORS = {"decoding": 1, "context_pruner": 2, "graph_pruning": 2, "nl2sql": 2, "eval": 3, "app": 4}
# a string that is nothing but a dotted prunekit name is a module named for a lazy import
LAZY_NAME = re.compile(rf"{ROOT}(\.\w+)+")


@dataclass(frozen=True)
class Import:
    """One import of a module: who imports (`module`, at `path:line`) and the absolute name it imports."""

    module: str
    path: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}: {self.module} imports {self.target}"


def module_name(path: Path) -> str:
    """`app/api/routes.py` -> `prunekit.app.api.routes`; `prunekit/__init__.py` -> `prunekit`; tests keep theirs."""
    parts = path.relative_to(REPO).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts if parts[0] in (ROOT, "tests") else (ROOT, *parts))


def absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a `from ... import` names, relative levels resolved against `module`."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports(path: Path) -> Iterator[Import]:
    """Every module `path` imports: import statements anywhere in it, and strings that name a prunekit module."""
    module = module_name(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            target = absolute(node, module, path.name == "__init__.py")
            yield Import(module, path, node.lineno, target)
            # `from prunekit import app` imports the package `prunekit.app`
            if target == ROOT:
                for alias in node.names:
                    yield Import(module, path, node.lineno, f"{target}.{alias.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and LAZY_NAME.fullmatch(node.value):
            yield Import(module, path, node.lineno, node.value)


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (REPO / folder).rglob("*.py"))


def floor_package(name: str) -> str | None:
    """The floor package a `prunekit.` name belongs to (`prunekit.eval.qa` -> `eval`); None outside the floors."""
    parts = name.split(".")
    if parts[0] == ROOT and len(parts) > 1 and parts[1] in FLOORS:
        return parts[1]
    return None


def test_the_floors_cover_every_installed_package() -> None:
    """The floor table names exactly the folders pyproject.toml installs under `prunekit.`."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folders = {name.removeprefix(f"{ROOT}."): folder for name, folder in setuptools["package-dir"].items()}
    folders.pop(ROOT)
    assert folders == {package: package for package in FLOORS}


def test_a_package_imports_only_from_lower_floors() -> None:
    violations = []
    for package, floor in FLOORS.items():
        for path in python_files(package):
            for found in imports(path):
                other = floor_package(found.target)
                if other is not None and other != package and FLOORS[other] >= floor:
                    violations.append(f"{found} (floor {floor} -> {FLOORS[other]})")
    assert not violations, "imports that do not go down the floors:\n" + "\n".join(violations)


def test_the_scan_sees_the_imports_that_exist() -> None:
    """The checker is only as good as its scan: the known edges between floors are found."""
    edges = {
        (module_name(path).split(".")[1], floor_package(found.target))
        for package in FLOORS
        for path in python_files(package)
        for found in imports(path)
    }
    assert {("app", "decoding"), ("app", "eval"), ("eval", "nl2sql"), ("nl2sql", "decoding")} <= edges


def test_the_namespace_root_imports_no_floor() -> None:
    """`import prunekit.decoding` runs prunekit/__init__.py first: it must load nothing, least of all `app`."""
    found = [str(i) for i in imports(REPO / ROOT / "__init__.py") if i.target.startswith(f"{ROOT}.")]
    assert not found


def test_no_module_imports_a_bare_top_level_name() -> None:
    """`import app`, `from eval import ...`, `from decoding.x import ...`: the packages exist only as `prunekit.*`."""
    bare = [
        str(found)
        for path in python_files(*FLOORS, ROOT, "tests")
        for found in imports(path)
        if found.target.split(".")[0] in FLOORS
    ]
    assert not bare, "imports without the `prunekit.` prefix:\n" + "\n".join(bare)


def test_relative_imports_resolve_to_absolute_names() -> None:
    """The resolver the checks rely on, on the cases the code could use."""

    def resolve(source: str, module: str, is_package: bool = False) -> str:
        node = ast.parse(source).body[0]
        assert isinstance(node, ast.ImportFrom)
        return absolute(node, module, is_package)

    assert resolve("from . import x", "prunekit.app.api.routes") == "prunekit.app.api"
    assert resolve("from .schemas import x", "prunekit.app.api.routes") == "prunekit.app.api.schemas"
    assert resolve("from ..eval import x", "prunekit.app.cli", is_package=True) == "prunekit.app.eval"
    assert resolve("from ...eval import x", "prunekit.app.cli.evals") == "prunekit.eval"
    assert resolve("from prunekit.eval import x", "prunekit.app.cli") == "prunekit.eval"
    assert module_name(REPO / "app" / "api" / "__init__.py") == "prunekit.app.api"
