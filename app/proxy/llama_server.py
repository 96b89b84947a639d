"""Start llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`) on the embedded GGUF: a real
upstream that nobody here wrote, for the proxy's tests and `prunekit eval proxy`.

    with llama_server() as base_url:  # e.g. http://127.0.0.1:41234/v1
        ...
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from prunekit.decoding.backends.embedded import embedded_gguf_path
from prunekit.decoding.errors import PrunekitError

__all__ = ["LLAMA_SERVER_MODEL", "LlamaServerError", "llama_server", "llama_server_available"]

LLAMA_SERVER_MODEL = "smollm2"  # the model alias the server answers to
_START_TIMEOUT_S = 120.0


class LlamaServerError(PrunekitError):
    """llama-cpp-python's server is not installed or did not start."""


def llama_server_available() -> bool:
    """Whether `llama-cpp-python[server]` is installed (its server imports starlette_context)."""
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", "starlette_context"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def llama_server(
    model: Path | None = None, n_ctx: int = 4096, interrupt_requests: bool = True, threads: int | None = None
) -> Iterator[str]:
    """Run the server on 127.0.0.1 for the block; yields its base URL (`.../v1`). `interrupt_requests` is the
    server's own default (a newer request cuts a running stream)."""
    if not llama_server_available():
        raise LlamaServerError("llama-cpp-python's server is not installed: pip install 'llama-cpp-python[server]'")
    port = _free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model or embedded_gguf_path()),
               "--model_alias", LLAMA_SERVER_MODEL, "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", str(n_ctx), "--interrupt_requests", str(interrupt_requests)]  # fmt: skip
    if threads:
        command += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            _wait_ready(process, base_url, log)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(process: subprocess.Popen[bytes], base_url: str, log: object) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)  # type: ignore[attr-defined]
            tail = log.read()[-2000:].decode(errors="replace")  # type: ignore[attr-defined]
            raise LlamaServerError(f"llama_cpp.server exited with code {process.returncode}: {tail}")
        try:
            if httpx.get(f"{base_url}/models", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise LlamaServerError(f"llama_cpp.server did not answer within {_START_TIMEOUT_S:.0f} s")
