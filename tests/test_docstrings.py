"""Every docstring example of the six packages runs here, so `make test` keeps the documentation true.

One test per module of `app`, `decoding`, `context_pruner`, `graph_pruning`, `nl2sql` and `eval`: it imports the
module (an import error is a failure: nobody can use a module that does not import), refuses `# doctest: +SKIP`
(an example that cannot run here is rewritten so it can, or removed), and runs the examples with ELLIPSIS, as
`pytest --doctest-modules` would. Only `llama_cpp` may be missing: its modules skip where llama-cpp-python did not
build, as the backend tests do (a failure under CI=true, which promises the build).
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "decoding", "context_pruner", "graph_pruning", "nl2sql", "eval")
OPTIONAL_IMPORTS = {"llama_cpp": "llama-cpp-python is not built on this machine"}
OPTION_FLAGS = doctest.ELLIPSIS


def module_names() -> list[str]:
    """Dotted names of every module of the packages, from the files (nothing is imported to list them)."""
    names = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            names.append("prunekit." + ".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_package_module_is_listed() -> None:
    names = module_names()
    assert {
        "prunekit.app",
        "prunekit.decoding.backends.llamacpp",
        "prunekit.nl2sql.safe_exec",
        "prunekit.eval.spider.exact_match",
    } <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", module_names())
def test_docstring_examples_run(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name in OPTIONAL_IMPORTS:
            skip_or_fail(f"{name}: {OPTIONAL_IMPORTS[exc.name]}")
        raise
    tests = sorted(doctest.DocTestFinder(exclude_empty=True).find(module), key=lambda t: t.lineno or 0)
    skipped = [
        f"{test.filename}:{(test.lineno or 0) + example.lineno + 1}"
        for test in tests
        for example in test.examples
        if example.options.get(doctest.SKIP)
    ]
    if skipped:
        pytest.fail(f"examples marked +SKIP never run; make them runnable or remove them: {skipped}", pytrace=False)
    runner = doctest.DocTestRunner(optionflags=OPTION_FLAGS)
    report: list[str] = []
    failed = sum(runner.run(test, out=report.append).failed for test in tests)
    if failed:
        pytest.fail(f"{failed} docstring example(s) of {name} failed:\n" + "".join(report), pytrace=False)
