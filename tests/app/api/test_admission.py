"""Admission control and cancellation: bounded places per route, 503 + Retry-After past them, hang-ups free the
model, SIGTERM ends the server under load. On the real embedded model and real HTTP servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from prunekit.app.api.admission import Admission, ClientGoneError
from prunekit.app.api.errors import ApiError
from prunekit.app.api.service import create_app
from prunekit.app.settings import Settings
from prunekit.eval.bench.attack import _hang_up_after
from tests.conftest import LiveServer, free_port

LONG = {"model": "prunekit-chat", "messages": [{"role": "user", "content": "Write a very long story."}]}
SHORT = {"model": "prunekit-chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


# ------------------------------------------------------------------------------------------ the gate itself
def test_places_then_bounded_waiting_then_503_with_retry_after():
    async def scenario() -> None:
        admission = Admission(limit=2, max_waiting=1, wait_s=0.2)
        first, second = await admission.enter("chat"), await admission.enter("chat")
        waiter = asyncio.ensure_future(admission.enter("chat"))
        await asyncio.sleep(0.01)
        with pytest.raises(ApiError) as full:  # two running, one waiting: no more
            await admission.enter("chat")
        assert full.value.status == 503 and int(full.value.headers["Retry-After"]) >= 1
        first.release()
        third = await waiter  # the waiter gets the place that came free
        assert admission.stats() == {"chat": {"running": 2, "waiting": 0}}
        with pytest.raises(ApiError) as late:  # waits, but no place comes free in time
            await admission.enter("chat")
        assert "within 0.2 s" in late.value.message
        other = await admission.enter("prune")  # each route has its own places
        for ticket in (second, third, other):
            ticket.release()
        second.release()  # a second release changes nothing
        assert admission.stats()["chat"] == {"running": 0, "waiting": 0}

    asyncio.run(scenario())


class _Hangable:
    """A request whose `receive` reports the client's hang-up once `hang_up()` is called."""

    def __init__(self) -> None:
        self._gone = asyncio.Event()

    def hang_up(self) -> None:
        self._gone.set()

    async def receive(self) -> dict:
        await self._gone.wait()
        return {"type": "http.disconnect"}


def test_a_client_that_hangs_up_while_waiting_leaves_the_queue():
    async def scenario() -> None:
        admission = Admission(limit=1, max_waiting=1, wait_s=5)
        running = await admission.enter("chat")
        client = _Hangable()
        waiter = asyncio.ensure_future(admission.enter("chat", client))
        await asyncio.sleep(0.01)
        assert admission.stats()["chat"] == {"running": 1, "waiting": 1}
        client.hang_up()
        with pytest.raises(ClientGoneError):
            await waiter
        assert admission.stats()["chat"] == {"running": 1, "waiting": 0}  # at once, not after `wait_s`
        running.release()
        nxt = await asyncio.wait_for(admission.enter("chat", _Hangable()), 1)  # the place was not kept for nobody
        nxt.release()
        assert admission.stats()["chat"] == {"running": 0, "waiting": 0}

    asyncio.run(scenario())


def test_cancel_all_cancels_every_request_in_flight():
    async def scenario() -> None:
        admission = Admission(limit=4, max_waiting=0, wait_s=1)
        tickets = [await admission.enter("chat") for _ in range(3)]
        tickets[0].release()
        admission.cancel_all("shutdown")
        assert [t.token.cancelled for t in tickets] == [False, True, True]

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------------ live service
@pytest.fixture
def small_service(embedded_model, tmp_path):
    settings = Settings(
        data_dir=tmp_path, rate_limit_per_minute=0, max_concurrent_requests=2, max_waiting_requests=1, queue_timeout_s=2
    )
    app = create_app(settings, model=embedded_model)
    with LiveServer(app) as server:
        server.app = app
        yield server


def _running(server) -> int:
    return sum(route["running"] for route in server.app.state.admission.stats().values())


def _wait_until(predicate, seconds: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    return None


@pytest.mark.slow
def test_overload_is_a_clean_503_with_retry_after(small_service):
    hangers = [
        threading.Thread(target=_hang_up_after, args=(small_service.url, {}, {**LONG, "max_tokens": 600}, 4.0))
        for _ in range(2)
    ]
    for t in hangers:
        t.start()
    assert _wait_until(lambda: _running(small_service) == 2, 5) is not None
    with httpx.Client(base_url=small_service.url, timeout=30) as client:
        waiting = threading.Thread(target=client.post, args=("/v1/chat/completions",), kwargs={"json": SHORT})
        waiting.start()  # takes the one waiting place
        time.sleep(0.3)
        refused = client.post("/v1/chat/completions", json=SHORT)
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "overloaded"
        assert client.post("/v1/prune", json={"items": [{"question": "q", "contexts": ["c."]}]}).status_code == 200
        waiting.join()
    for t in hangers:
        t.join()


@pytest.mark.slow
@pytest.mark.parametrize("stream", [True, False])
def test_a_hang_up_frees_the_place_and_the_model_within_a_second(small_service, embedded_model, stream):
    body = {**LONG, "max_tokens": 1500, "stream": stream}
    embedded_model.chat(SHORT["messages"])  # warm: the first use builds the tokenizer tables
    _hang_up_after(small_service.url, {}, body, 1.5)
    freed = _wait_until(lambda: _running(small_service) == 0, 5)
    assert freed is not None and freed < 1.0
    started = time.monotonic()
    assert httpx.post(f"{small_service.url}/v1/chat/completions", json=SHORT, timeout=30).status_code == 200
    assert time.monotonic() - started < 5  # the model is not still writing 1,500 tokens for nobody


@pytest.mark.slow
def test_a_hang_up_before_the_first_token_cancels_an_agent_team(small_service):
    """The agents route works for seconds before its first token; a client that leaves then is noticed too."""
    from prunekit.graph_pruning import make_task, pruner_for

    pruner_for("math").choose(make_task("math", "What is 1 + 1?"))  # loading the pruner is once, and not cancellable
    body = {
        "model": "prunekit-agents",
        "messages": [{"role": "user", "content": "What is 12 * 7 + 3?"}],
        "stream": True,
    }
    _hang_up_after(small_service.url, {}, body, 1.0)
    freed = _wait_until(lambda: _running(small_service) == 0, 5)
    assert freed is not None and freed < 1.5


@pytest.mark.slow
def test_sigterm_ends_the_server_within_10_s_under_load(tmp_path):
    port = free_port()
    env = {**os.environ, "PRUNEKIT_DATA_DIR": str(tmp_path), "PRUNEKIT_PORT": str(port)}
    env["PRUNEKIT_RATE_LIMIT_PER_MINUTE"] = "0"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prunekit"), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        up = _wait_until(lambda: _health(url), 120)
        assert up is not None, "the server did not start"
        clients = [
            threading.Thread(target=_quietly_post, args=(url, {**LONG, "max_tokens": 2000, "stream": s}))
            for s in (True, False, True, False)
        ]
        for t in clients:
            t.start()
        time.sleep(2.0)
        sent = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)
        assert time.monotonic() - sent < 10
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def _health(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _quietly_post(url: str, body: dict) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
