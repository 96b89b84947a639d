"""Shared fixtures: the shared benchmark data and the embedded model, each loaded once per session.

A test that needs something the repository does not hold (benchmark data, llama.cpp's build, an optional
integration, PostgreSQL, Chromium, bubblewrap) asks for it through `require_data`, `require_module` or
`require_part`: on a user's machine a missing part is a skip with one reason that says how to provide it; under
`CI=true` it is a failure, since CI sets every part up and a skip there would hide a part that broke. The
`pytest_runtest_makereport` and `pytest_make_collect_report` hooks below are the safety net for skips that bypass
these helpers: under `CI=true` a skip whose reason is not in `CI_ALLOWED_SKIPS` is reported as a failure.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Generator
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PRUNEKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() == "true"


# The only skips CI accepts: (test file, reason fragment) for what no setup can provide on a given machine.
# README.md (Development) lists the same; keep the two in step.
CI_ALLOWED_SKIPS: tuple[tuple[str, str], ...] = (
    # the AMX kernels need a CPU with AMX tiles (Sapphire Rapids or later); CI's runner may not have one
    ("tests/decoding/backends/test_llamacpp_amx.py", "this CPU has no AMX tiles"),
)
DATA_HOWTO = (
    "put the official benchmark files there (README.md, Evaluation data) or set PRUNEKIT_SHARED_DATA=/path/to/data"
)


def skip_or_fail(reason: str) -> NoReturn:
    """Skip with `reason`, or fail with it under CI=true: CI promises every part, so a missing one is a bug there."""
    if IN_CI:
        pytest.fail(f"CI=true needs this part: {reason}", pytrace=False)
    pytest.skip(reason)


def require_part(present: bool, reason: str) -> None:
    """Go on when `present`; else skip (fail under CI=true) with `reason`, which says what is missing and how to
    provide it."""
    if not present:
        skip_or_fail(reason)


def require_module(name: str, why: str) -> ModuleType:
    """The module `name`, imported; else skip (fail under CI=true) naming `why` it is needed and the import error.

    Unlike `pytest.importorskip` it does not hide a broken build in CI. At a module's top level, under CI=true,
    the failure is a collection error for that file (`.ci/run` keeps collecting the other files)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        error = str(exc)  # reported below, outside the handler: one message, not a chained traceback
    reason = f"{why}: import {name} failed ({error})"
    if IN_CI:
        pytest.fail(f"CI=true needs this part: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_llamacpp() -> ModuleType:
    """`decoding.backends.llamacpp`, the embedded model's fast path that `make install` builds (skip/fail as above)."""
    return require_module(
        "prunekit.decoding.backends.llamacpp",
        "the llama.cpp fast path (llama-cpp-python: `make install` builds it; needs a C/C++ compiler and CMake)",
    )


def require_data(relative: str) -> Path:
    """Path of a file under the shared benchmark data; skip the test when it is absent (fail under CI=true).

    Without any data (a fresh clone) every data test gives the same reason, so `-ra` shows it once with a count."""
    path = SHARED_DATA / relative
    if not path.exists():
        if SHARED_DATA.is_dir():
            skip_or_fail(f"benchmark file {relative} is missing from {SHARED_DATA}: {DATA_HOWTO}")
        skip_or_fail(f"no benchmark data: {SHARED_DATA} does not exist: {DATA_HOWTO}")
    return path


def _skip_reason(longrepr: object) -> str:
    """The reason of a skip report (pytest keeps it as (path, line, "Skipped: reason"))."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def ci_allows_skip(nodeid: str, reason: str) -> bool:
    """Whether CI accepts this skip: its file and reason are in `CI_ALLOWED_SKIPS`."""
    path = nodeid.split("::", 1)[0]
    return any(path == where and fragment in reason for where, fragment in CI_ALLOWED_SKIPS)


def _fail_unlisted_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Under CI=true, turn a skip that is not allowed into a failure that names the reason and the allow-list."""
    if not (IN_CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report.longrepr)
    if not ci_allows_skip(report.nodeid, reason):
        report.outcome = "failed"
        report.longrepr = f"CI=true: skipped ({reason}), and this skip is not in tests/conftest.py's CI_ALLOWED_SKIPS"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    """A test's skip (in setup or in the test) that CI does not allow becomes a failure under CI=true."""
    report = yield
    assert isinstance(report, pytest.TestReport)
    _fail_unlisted_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, object, object]:
    """A whole file's skip (`pytest.skip(allow_module_level=True)`, `importorskip` at the top) likewise."""
    report = yield
    assert isinstance(report, pytest.CollectReport)
    _fail_unlisted_skip(report)
    return report


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_data("")


@pytest.fixture(scope="session")
def hf_model():
    """The embedded model through transformers (the training path)."""
    from prunekit.decoding.backends.local import LocalModel

    return LocalModel.embedded()


@pytest.fixture(scope="session")
def embedded_model():
    """The embedded model through its default backend (llama.cpp when built)."""
    from prunekit.decoding.backends.loader import load_embedded

    return load_embedded()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real uvicorn server on 127.0.0.1 in a background thread."""

    def __init__(self, asgi_app) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(asgi_app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


SERVICE_KEY = "test-key-123"


@pytest.fixture(scope="session")
def live_service(embedded_model, tmp_path_factory):
    """The prunekit service on the real embedded model, with an API key required."""
    from prunekit.app.api.service import create_app
    from prunekit.app.settings import Settings

    settings = Settings(api_keys=[SERVICE_KEY], max_body_bytes=1_000_000, data_dir=tmp_path_factory.mktemp("data"))
    with LiveServer(create_app(settings, model=embedded_model)) as server:
        yield server
