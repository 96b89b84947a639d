"""The wheel: one import name, every module and every shipped file, and an install that lives beside a user's own code.

The code folders stay at the repository root but install as `prunekit.app`, `prunekit.decoding`, ...
(pyproject.toml's `package-dir`). These tests build the wheel as a user's `pip install` would and check that
it claims only `prunekit` at the top level (a top-level `app` or `eval` would shadow, or be shadowed by, a
user's own), that nothing the repository holds in the code folders is left out (a package missing from
pyproject's list, or package data its patterns miss), and that the installed copy imports from a fresh
virtual environment whose working directory holds a user package named `app`.

The build runs on a copy of the repository's files: setuptools writes `build/` and `*.egg-info` next to the
sources it builds, and a test must not write into the tree it tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("app", "decoding", "context_pruner", "graph_pruning", "nl2sql", "eval")
# what the code loads from its own folders at run time (weights, the web page, recipes, records, questions)
PACKAGE_DATA = (
    "decoding/decog/weights",
    "context_pruner/weights",
    "graph_pruning/weights",
    "graph_pruning/records",
    "context_pruner/recipes",
    "app/api/static",
    "eval/questions",
)
# outside a git checkout: what the build reads, less what running the code leaves behind
BUILD_INPUTS = ("pyproject.toml", "README.md", "prunekit", *CODE_FOLDERS)
NOT_SOURCES = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
USER_SCRIPT = """
import sys
import app
assert app.MINE, "the user's own `app` was shadowed"
import prunekit.app.cli
import prunekit.eval.spider.exact_match
import prunekit.decoding
assert sys.modules["app"].MINE, "importing prunekit replaced the user's `app`"
# through sys.modules: `prunekit.eval.spider.exact_match` as an attribute is the function the package exports
for name in ("prunekit", "prunekit.app.cli", "prunekit.eval.spider.exact_match", "prunekit.decoding"):
    print(sys.modules[name].__file__)
"""


def source_files() -> list[Path]:
    """The repository's files as a clean checkout has them (tracked, plus new ones git does not ignore)."""
    if (REPO / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            check=True,
            capture_output=True,
        ).stdout.decode()
        return [Path(name) for name in listed.split("\0") if name]
    inputs = [REPO / name for name in BUILD_INPUTS]
    files = [path for path in inputs if path.is_file()]
    files += [path for folder in inputs if folder.is_dir() for path in folder.rglob("*") if path.is_file()]
    return [
        path.relative_to(REPO)
        for path in files
        if not any(NOT_SOURCES("", [part]) for part in path.relative_to(REPO).parts)
    ]


def copy_sources(destination: Path) -> None:
    for relative in source_files():
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(REPO / relative, target)
        except FileNotFoundError:  # deleted in the work tree but still in git's index
            continue


def pip(*args: str) -> None:
    """The running interpreter's pip, offline (`--no-index`): everything it needs is here."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args, "--no-index", "-q"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    destination = tmp_path_factory.mktemp("sources")
    copy_sources(destination)
    return destination


@pytest.fixture(scope="module")
def wheel(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from the sources (no network: no dependencies, the running setuptools)."""
    out = tmp_path_factory.mktemp("wheel")
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(sources))
    (built,) = out.glob("prunekit-*.whl")
    return built


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if not name.endswith("/")}


def test_the_wheel_claims_only_the_prunekit_name(wheel: Path) -> None:
    top = {name.split("/")[0] for name in wheel_names(wheel)}
    dist_info = {name for name in top if name.endswith(".dist-info")}
    assert len(dist_info) == 1
    assert top - dist_info == {"prunekit"}, "top-level names besides prunekit: no bare `app`, `eval`, ..."


def test_every_file_of_the_code_folders_ships(wheel: Path, sources: Path) -> None:
    """Every module, every package (a folder with `__init__.py`) and every data file, under `prunekit/`."""
    shipped = wheel_names(wheel)
    expected = {
        f"prunekit/{path.relative_to(sources).as_posix()}"
        for folder in CODE_FOLDERS
        for path in (sources / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    packages = [path.parent for folder in CODE_FOLDERS for path in (sources / folder).rglob("__init__.py")]
    assert len(packages) > len(CODE_FOLDERS)  # the subpackages (app/api, decoding/decog, eval/bench, ...) are seen
    assert expected - shipped == set(), "in the repository but not in the wheel (pyproject.toml [tool.setuptools])"
    for folder in PACKAGE_DATA:
        assert any(name.startswith(f"prunekit/{folder}/") for name in shipped), f"no package data from {folder}/"
    assert "prunekit/__init__.py" in shipped
    assert not any(name.startswith("prunekit/tests/") for name in shipped)


def fresh_environment(root: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed, seeing the running interpreter's dependencies.

    The dependencies come through a path line in a `.pth` file: a folder added that way is not scanned for
    `.pth` files of its own, so the editable install of the development environment stays out."""
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    pip("--python", str(python), "install", "--no-deps", str(wheel))
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(site_packages) / "_prunekit_test_dependencies.pth").write_text("\n".join(ours) + "\n")
    return python


def test_the_installed_wheel_imports_beside_a_user_app_package(wheel: Path, tmp_path: Path) -> None:
    root = tmp_path / "venv"
    python = fresh_environment(root, wheel)
    cwd = tmp_path / "user"
    (cwd / "app").mkdir(parents=True)
    (cwd / "app" / "__init__.py").write_text("MINE = True\n")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    run = subprocess.run(
        [str(python), "-c", USER_SCRIPT], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    files = [Path(line) for line in run.stdout.splitlines()]
    assert len(files) == 4
    for file in files:
        assert file.resolve().is_relative_to(root.resolve()), f"{file} is not the installed copy"
        assert not file.resolve().is_relative_to(REPO)
    script = root / "bin" / "prunekit"
    assert "prunekit.app.cli" in script.read_text(errors="replace")
