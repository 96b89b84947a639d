"""Shared fixtures: the shared benchmark data and the embedded model, each loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PRUNEKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_data(relative: str) -> Path:
    """Path of a file under ../shared/data; skip the test when it is absent (fail under CI=true)."""
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"benchmark data {path} is missing (see DESIGN.md: ../shared/data beside the repo)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_data("")


@pytest.fixture(scope="session")
def hf_model():
    """The embedded model through transformers (the training path)."""
    from decoding.local import LocalModel

    return LocalModel.embedded()


@pytest.fixture(scope="session")
def embedded_model():
    """The embedded model through its default backend (llama.cpp when built)."""
    from decoding.loader import load_embedded

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
    from app.service import create_app
    from app.settings import Settings

    settings = Settings(api_keys=[SERVICE_KEY], max_body_bytes=1_000_000, data_dir=tmp_path_factory.mktemp("data"))
    with LiveServer(create_app(settings, model=embedded_model)) as server:
        yield server
