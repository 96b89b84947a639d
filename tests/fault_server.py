"""A scriptable OpenAI-compatible HTTP server on 127.0.0.1 for fault injection (timeouts, 5xx, bad SSE)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prunekit.decoding import OpenAIModel
from tests.conftest import free_port

HI = [{"role": "user", "content": "Hi"}]
COMPLETION = {
    "id": "x",
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def sse(*events: str) -> bytes:
    return b"".join(f"data: {e}\n\n".encode() for e in events)


def delta(text: str, finish: str | None = None) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]})


Behaviour = Callable[[BaseHTTPRequestHandler, int], None]


class FaultServer:
    """Answers request number n (0-based) with `script[n]` (the last entry repeats)."""

    def __init__(self, script: list[Behaviour]) -> None:
        self.script = script
        self.calls = 0
        self.bodies: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                owner.bodies.append(json.loads(self.rfile.read(length)))
                n = owner.calls
                owner.calls += 1
                owner.script[min(n, len(owner.script) - 1)](self, n)

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def model(self, **kwargs) -> OpenAIModel:
        kwargs.setdefault("backoff_s", 0.01)
        kwargs.setdefault("read_timeout", 2.0)
        return OpenAIModel(f"http://127.0.0.1:{self.port}/v1", model="m", **kwargs)


def reply(status: int, body: bytes, content_type: str = "application/json", headers: dict | None = None) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler, n: int) -> None:
        handler.send_response(status)
        handler.send_header("content-type", content_type)
        handler.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(body)

    return behave


def ok() -> Behaviour:
    return reply(200, json.dumps(COMPLETION).encode())


def error(status: int, headers: dict | None = None) -> Behaviour:
    return reply(status, json.dumps({"error": {"message": f"boom {status}"}}).encode(), headers=headers)


def stream(body: bytes) -> Behaviour:
    return reply(200, body, "text/event-stream")


def sleep(seconds: float) -> Behaviour:
    def behave(handler: BaseHTTPRequestHandler, n: int) -> None:
        time.sleep(seconds)
        ok()(handler, n)

    return behave
