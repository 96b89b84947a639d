"""The service over a failing LLM backend: clean 5xx JSON, and it keeps serving."""

from __future__ import annotations

import json

import httpx
import pytest

from prunekit.app.api.service import create_app
from prunekit.app.settings import Settings
from tests.conftest import LiveServer
from tests.fault_server import FaultServer, delta, error, reply, sleep, sse, stream

BODY = {"model": "prunekit-chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [
        (error(500), 502),
        (error(401), 502),  # the backend's own auth failure is our upstream's fault, not the client's
        (reply(200, b"<html>not json</html>", "text/html"), 502),
        (sleep(1.5), 504),
    ],
)
def test_backend_failures_become_clean_5xx_and_service_recovers(tmp_path, behaviour, status):
    # the chat graph streams from the backend, so the healthy answer is an SSE stream
    with FaultServer([behaviour, behaviour, stream(sse(delta("Hello", "stop"), "[DONE]"))]) as backend:
        model = backend.model(max_retries=0, read_timeout=0.5)
        with LiveServer(create_app(Settings(data_dir=tmp_path), model=model)) as server:
            failed = httpx.post(f"{server.url}/v1/chat/completions", json=BODY, timeout=30)
            assert failed.status_code == status
            payload = failed.json()["error"]
            assert payload["type"] in ("backend_error", "backend_timeout") and "Traceback" not in payload["message"]
            streamed = httpx.post(f"{server.url}/v1/chat/completions", json={**BODY, "stream": True}, timeout=30)
            assert streamed.status_code == status
            healthy = httpx.post(f"{server.url}/v1/chat/completions", json=BODY, timeout=30)
            assert healthy.status_code == 200 and healthy.json()["choices"][0]["message"]["content"] == "Hello"


def test_backend_down(tmp_path):
    from prunekit.decoding import OpenAIModel
    from tests.conftest import free_port

    model = OpenAIModel(f"http://127.0.0.1:{free_port()}/v1", model="m", max_retries=0)
    with LiveServer(create_app(Settings(data_dir=tmp_path), model=model)) as server:
        response = httpx.post(f"{server.url}/v1/chat/completions", json=BODY, timeout=30)
        assert response.status_code == 502 and "cannot reach the backend" in response.json()["error"]["message"]
        assert httpx.get(f"{server.url}/health").status_code == 200


def test_garbage_mid_stream_is_reported_in_band(tmp_path):
    body = sse(delta("Hel"), "{broken")
    with FaultServer([stream(body)]) as backend:
        with LiveServer(create_app(Settings(data_dir=tmp_path), model=backend.model(max_retries=0))) as server:
            response = httpx.post(f"{server.url}/v1/chat/completions", json={**BODY, "stream": True}, timeout=30)
    events = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
    assert response.status_code == 200  # the stream had started
    assert json.loads(events[-2])["error"]["type"] == "backend_error"
    assert events[-1] == "[DONE]"


@pytest.mark.parametrize("upstream_status", [400, 422])
def test_a_request_the_backend_refuses_is_a_400_in_its_words(tmp_path, upstream_status):
    refusal = reply(upstream_status, json.dumps({"error": {"message": "tools: unknown type"}}).encode())
    with FaultServer([refusal]) as backend:
        with LiveServer(create_app(Settings(data_dir=tmp_path), model=backend.model(max_retries=0))) as server:
            response = httpx.post(f"{server.url}/v1/chat/completions", json=BODY, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "tools: unknown type" in error["message"]
