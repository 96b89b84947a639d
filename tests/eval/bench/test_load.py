"""The load tool against a real service (uvicorn on 127.0.0.1) whose chat model is a paced fake.

The fake makes the chat side's timing and failures known in advance, so the figures can be checked;
`/v1/prune` runs the real shipped pruner.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from prunekit.app.api.service import create_app
from prunekit.app.settings import Settings
from prunekit.decoding.types import ChatChunk, Usage, collect
from prunekit.eval.bench.load import LoadTestError, main, percentile, run_load
from tests.conftest import SERVICE_KEY, LiveServer, free_port

TOKENS, DELAY_S, MAX_TOKENS = 4, 0.01, 8


class PacedModel:
    """Streams TOKENS words DELAY_S apart; with `fail_every`, every n-th call breaks after its first word."""

    name = "paced"

    def __init__(self, fail_every: int = 0) -> None:
        self.fail_every = fail_every
        self.lock = threading.Lock()
        self.calls = self.failures = 0
        self.max_tokens_seen: set[int] = set()

    def stream(self, messages, params=None) -> Iterator[ChatChunk]:
        with self.lock:
            self.calls += 1
            call = self.calls
            self.max_tokens_seen.add(params.max_tokens)
        n = min(TOKENS, params.max_tokens)
        for i in range(n):
            time.sleep(DELAY_S)
            if i == 1 and self.fail_every and call % self.fail_every == 0:
                with self.lock:
                    self.failures += 1
                raise RuntimeError("the backend broke")
            last = i == n - 1
            yield ChatChunk(f"w{i} ", "length" if last else None, Usage(5, n) if last else None)

    def chat(self, messages, params=None):
        return collect(self.stream(messages, params), self.name)


@pytest.fixture(scope="module", autouse=True)
def warm_pruner():
    """Load the shipped pruner before the clock starts: a cold load would eat a 3-second run."""
    from prunekit.context_pruner import default_pruner

    default_pruner()


@contextmanager
def service(model: PacedModel, tmp_path) -> Iterator[LiveServer]:
    settings = Settings(api_keys=[SERVICE_KEY], data_dir=tmp_path, rate_limit_per_minute=0)
    with LiveServer(create_app(settings, model=model)) as server:
        yield server


def test_figures_of_a_short_run(tmp_path):
    model = PacedModel()
    with service(model, tmp_path) as server:
        figures = run_load(
            server.url, api_key=SERVICE_KEY, clients=2, seconds=3.0, server_pid=os.getpid(), max_tokens=MAX_TOKENS
        )

    endpoints = ("prune", "chat", "chat_stream")
    assert figures["errors"] == 0 and figures["error_rate"] == 0
    assert all(figures[f"{e}.requests"] >= 1 for e in endpoints)
    assert figures["requests"] == sum(figures[f"{e}.requests"] for e in endpoints)
    chats = figures["chat.requests"] + figures["chat_stream.requests"]
    assert model.calls == chats  # every chat request counted reached the model, and no other did
    assert model.max_tokens_seen == {MAX_TOKENS}
    assert figures["completion_tokens"] == TOKENS * chats
    # the clients alternate: within one request per client of an even split
    assert abs(figures["prune.requests"] - chats) <= 2
    assert 3.0 <= figures["seconds"] < 60
    assert figures["throughput_rps"] == pytest.approx(figures["requests"] / figures["seconds"])
    for e in endpoints:
        assert 0 < figures[f"{e}.p50_ms"] <= figures[f"{e}.p99_ms"] <= figures[f"{e}.max_ms"]
    assert figures["chat.p50_ms"] >= TOKENS * DELAY_S * 1000  # the model's own pacing is a floor
    assert figures["chat_stream.ttft_p50_ms"] < figures["chat_stream.max_ms"]
    assert figures["chat_stream.ttft_p50_ms"] >= DELAY_S * 1000
    assert figures["rss.samples"] >= 4  # start, about one a second, end
    assert 0 < figures["rss.start_mb"] <= figures["rss.max_mb"] and figures["rss.end_mb"] <= figures["rss.max_mb"]
    assert figures["server_exited"] == 0


def test_model_failures_are_errors_by_kind(tmp_path):
    model = PacedModel(fail_every=3)
    with service(model, tmp_path) as server:
        figures = run_load(server.url, api_key=SERVICE_KEY, clients=2, seconds=2.0, max_tokens=MAX_TOKENS)

    assert model.failures >= 1
    assert figures["chat.errors"] + figures["chat_stream.errors"] == model.failures
    # a non-streamed failure is a 500; a streamed one has started, so it arrives as an error event
    assert figures.get("errors.http_500", 0) == figures["chat.errors"]
    assert figures.get("errors.stream_error", 0) == figures["chat_stream.errors"]
    # An unexpected 500 re-raises through Starlette, so uvicorn closes the keep-alive connection after
    # answering; a client's next request can race that close and be reset. It failed, so it counts.
    resets = figures.get("errors.transport", 0)
    assert resets <= figures.get("errors.http_500", 0)
    assert figures["errors"] == model.failures + resets
    assert figures["prune.errors"] <= resets
    assert figures["error_rate"] == pytest.approx(figures["errors"] / figures["requests"])
    assert "rss.start_mb" not in figures  # no pid, no memory figures


def test_answers_of_the_wrong_shape_are_errors(tmp_path):
    """A server that answers 200 with the wrong bodies gets no successes."""
    app = FastAPI()

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"data": [{"id": "prunekit-chat"}]}

    @app.post("/v1/prune")
    async def prune():
        return {"results": []}

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        if not body.get("stream"):
            return {"choices": []}

        async def cut_short():  # no finish reason, no usage, no [DONE]
            yield 'data: {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": null}]}\n\n'

        return StreamingResponse(cut_short(), media_type="text/event-stream")

    with LiveServer(app) as server:
        figures = run_load(server.url, clients=1, seconds=1.0)
    assert figures["requests"] >= 4
    assert figures["errors"] == figures["errors.malformed"] == figures["requests"]
    assert figures["throughput_rps"] == 0 and "chat.p50_ms" not in figures


def test_bad_setups_are_refused_with_a_reason(tmp_path):
    nowhere = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LoadTestError, match="cannot reach"):
        run_load(nowhere, seconds=1)
    with pytest.raises(LoadTestError, match="clients"):
        run_load(nowhere, clients=0)
    with pytest.raises(LoadTestError, match="seconds"):
        run_load(nowhere, seconds=0)
    with pytest.raises(LoadTestError, match="max_tokens"):
        run_load(nowhere, max_tokens=0)
    with pytest.raises(LoadTestError, match="no process"):
        run_load(nowhere, server_pid=2**22 + 12345)  # above the kernel's pid_max default
    with service(PacedModel(), tmp_path) as server:
        with pytest.raises(LoadTestError, match="API key"):
            run_load(server.url, api_key="wrong", seconds=1)


def test_command_line_prints_the_figures_as_json(tmp_path, capsys):
    with service(PacedModel(), tmp_path) as server:
        code = main(["--url", f"{server.url}/v1", "--api-key", SERVICE_KEY, "--clients", "1", "--seconds", "1"])
    assert code == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["requests"] >= 1 and figures["errors"] == 0 and figures["clients"] == 1

    assert main(["--url", f"http://127.0.0.1:{free_port()}", "--seconds", "1"]) == 2
    assert "error: cannot reach" in capsys.readouterr().err


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50, 99, 100)
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
