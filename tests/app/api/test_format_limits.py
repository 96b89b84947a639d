"""Format bombs through the real service: POST /v1/chat/completions with `format` is a 400 in well under a second,
no thread stays busy afterwards, and the next ordinary request is served.

The model is scripted but guides formats exactly as the local backends do (`FormatGuide.apply` on the request's
params, over a byte-level vocabulary like SmolLM2's), so the request takes the service's real compile path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import psutil
import pytest

from prunekit.app.api.service import create_app
from prunekit.app.settings import Settings
from prunekit.decoding import ChatChunk, ChatResult, GenerationParams, Usage
from prunekit.decoding.decog import CompileBudget, TokenVocabulary
from prunekit.decoding.decog.guided import FormatGuide
from tests.conftest import LiveServer

BOMBS = {
    "regex:a{50000}": "repeats {50000}",
    "regex:(a{1000}){1000}": "repeats {1000}",
    "regex:(x|y)*x(x|y){24}": "2^25 automaton states",
    'json:{"answer": {"pattern": "(x|y)*x(x|y){24}"}}': "pattern of JSON key 'answer'",
    # passes the static limits and takes interegular a minute: the compile child is killed at the deadline
    "pivot:<free:32>Final: <int><free:16>.": "took longer than 0.2 s to compile",
}


class GuidedModel:
    """Answers "yes"; like `LocalModel.stream`, it compiles the request's format before generating."""

    name = "guided-scripted"
    context_length = 2048

    def __init__(self) -> None:
        vocab = TokenVocabulary.from_bytes([None] + [bytes([b]) for b in range(256)], [0])
        self.guide = FormatGuide(vocab, budget=CompileBudget(timeout_s=0.2))
        self.formats: list[str | None] = []

    def stream(
        self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None = None
    ) -> Iterator[ChatChunk]:
        params = self.guide.apply(params or GenerationParams())  # a bad format fails here, at the call
        self.formats.append(params.format)
        return iter([ChatChunk("yes"), ChatChunk("", "stop", Usage(prompt_tokens=5, completion_tokens=1))])

    def chat(self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None = None) -> ChatResult:
        return ChatResult("".join(c.text for c in self.stream(messages, params)), "stop", Usage(5, 1), self.name)


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[tuple[LiveServer, GuidedModel]]:
    model = GuidedModel()
    settings = Settings(data_dir=tmp_path_factory.mktemp("format-limits"), rate_limit_per_minute=0)
    with LiveServer(create_app(settings, model=model)) as server:
        yield server, model


def chat(url: str, fmt: str) -> httpx.Response:
    body = {
        "model": "prunekit-chat",
        "messages": [{"role": "user", "content": "Is the sky blue?"}],
        "max_tokens": 8,
        "format": fmt,
        "format_method": "hard_mask",
    }
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


@pytest.mark.parametrize("spec", list(BOMBS))
def test_a_format_bomb_is_a_400_in_under_a_second(service, spec: str) -> None:
    server, _ = service
    chat(server.url, "choice:yes|no")  # the first compile starts the compiler's forkserver (once per process)
    t0 = time.perf_counter()
    response = chat(server.url, spec)
    elapsed = time.perf_counter() - t0
    assert response.status_code == 400, response.text
    assert BOMBS[spec] in response.json()["error"]["message"]
    assert elapsed < 1.0, f"{spec} took {elapsed:.2f} s"


def test_a_streamed_request_with_a_bomb_is_a_400_too(service) -> None:
    server, _ = service
    body = {"model": "prunekit-chat", "messages": [{"role": "user", "content": "x"}], "format": "regex:a{50000}"}
    t0 = time.perf_counter()
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json={**body, "stream": True}, timeout=30) as r:
        assert r.status_code == 400 and "repeats {50000}" in r.read().decode()
    assert time.perf_counter() - t0 < 1.0


def test_after_the_bombs_no_thread_is_busy_and_the_next_request_is_served(service) -> None:
    server, model = service
    for spec in BOMBS:
        assert chat(server.url, spec).status_code == 400
    process = psutil.Process()
    before = {t.id: t.user_time + t.system_time for t in process.threads()}
    cpu_before = sum(process.cpu_times()[:2])
    time.sleep(1.0)
    cpu = sum(process.cpu_times()[:2]) - cpu_before
    after = {t.id: t.user_time + t.system_time for t in process.threads()}
    busiest = max((after[i] - before.get(i, 0.0) for i in after), default=0.0)
    assert cpu < 0.3 and busiest < 0.2, f"{cpu:.2f} s of CPU in 1 s idle, busiest thread {busiest:.2f} s"
    assert _grandchildren(process) == []  # the forkserver stays; none of its compile children does
    response = chat(server.url, "choice:yes|no")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "yes"
    assert model.formats[-1] == "choice:yes|no"


def _grandchildren(process: psutil.Process) -> list[int]:
    out = []
    for child in process.children(recursive=True):
        try:
            if child.ppid() != process.pid:
                out.append(child.pid)
        except psutil.NoSuchProcess:  # exited while we looked: gone is what we want
            pass
    return out
