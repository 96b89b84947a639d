"""Scale-out: two service processes share conversation threads through one PostgreSQL checkpointer.

Each worker is a separate Python process (nothing shared in memory) running `create_app` under
uvicorn with its own model object, both pointed at the same `database_url`. The model is a fake that
says which worker answered and how much history it was given: the point is the shared store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import httpx
import pytest

from prunekit.decoding.types import ChatChunk, Usage, collect
from tests.conftest import REPO, free_port, skip_or_fail


class EchoModel:
    """Answers '<label> heard <n> messages, the first: <text>' (which worker, how much history it saw)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.name = f"echo-{label}"

    def stream(self, messages, params=None):
        text = f"{self.label} heard {len(messages)} messages, the first: {messages[0]['content']}"
        yield ChatChunk(text, "stop", Usage(len(messages), 8))

    def chat(self, messages, params=None):
        return collect(self.stream(messages, params), self.name)


# What each worker process runs: the real service around its own EchoModel.
WORKER = """
import sys
import uvicorn
from prunekit.app.api.service import create_app
from prunekit.app.settings import Settings
from tests.app.api.test_scale_out import EchoModel

label, port, database_url, data_dir = sys.argv[1:5]
settings = Settings(database_url=database_url, data_dir=data_dir, rate_limit_per_minute=0)
uvicorn.run(create_app(settings, model=EchoModel(label)), host="127.0.0.1", port=int(port), log_level="warning")
"""


@dataclass
class Worker:
    label: str
    url: str
    pid: int


@pytest.fixture(scope="module")
def database_url() -> str:
    url = os.environ.get("PRUNEKIT_TEST_DATABASE_URL")
    if not url:
        skip_or_fail(
            "PostgreSQL: PRUNEKIT_TEST_DATABASE_URL is not set (.ci/run starts one; or: url=$(bash .ci/postgres.sh))"
        )
    return url


@contextmanager
def worker(label: str, database_url: str, data_dir) -> Iterator[Worker]:
    """One service process; stopped (by its pid) on exit."""
    port = free_port()
    args = [sys.executable, "-c", WORKER, label, str(port), database_url, str(data_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"worker {label} exited with {process.returncode}: {process.stderr.read()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {label} did not start within 180 s")
            time.sleep(0.2)
        yield Worker(label, url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def workers(database_url, tmp_path_factory) -> Iterator[tuple[Worker, Worker]]:
    with ExitStack() as stack:
        # Separate data dirs: nothing may be shared through the local disk either, only through PostgreSQL.
        a = stack.enter_context(worker("A", database_url, tmp_path_factory.mktemp("worker-a")))
        b = stack.enter_context(worker("B", database_url, tmp_path_factory.mktemp("worker-b")))
        yield a, b


def ask(server: Worker, thread: str, text: str, stream: bool = False) -> str:
    body = {"model": "prunekit-chat", "messages": [{"role": "user", "content": text}], "thread_id": thread}
    if not stream:
        response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]["content"]
    parts = []
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json={**body, "stream": True}, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data:") and line != "data: [DONE]":
                chunk = json.loads(line[5:])
                assert "error" not in chunk, chunk
                parts += [c["delta"].get("content") or "" for c in chunk["choices"]]
    return "".join(parts)


def history(server: Worker, thread: str) -> list[tuple[str, str]]:
    response = httpx.get(f"{server.url}/v1/threads/{thread}", timeout=30)
    assert response.status_code == 200, response.text
    return [(m["role"], m["content"]) for m in response.json()["messages"]]


def test_workers_are_separate_processes(workers):
    a, b = workers
    assert a.pid != b.pid != os.getpid()
    assert httpx.get(f"{a.url}/health").json()["backend"] == "echo-A"
    assert httpx.get(f"{b.url}/health").json()["backend"] == "echo-B"


def test_a_thread_started_on_one_worker_continues_on_the_other(workers):
    a, b = workers
    thread = f"scale-{uuid.uuid4().hex}"
    assert ask(a, thread, "My name is Ada.") == "A heard 1 messages, the first: My name is Ada."
    # B was never told: it read the turn A stored, so the model sees the whole conversation
    assert ask(b, thread, "What is my name?") == "B heard 3 messages, the first: My name is Ada."
    assert ask(a, thread, "Say it again.", stream=True) == "A heard 5 messages, the first: My name is Ada."

    expected = [
        ("user", "My name is Ada."),
        ("assistant", "A heard 1 messages, the first: My name is Ada."),
        ("user", "What is my name?"),
        ("assistant", "B heard 3 messages, the first: My name is Ada."),
        ("user", "Say it again."),
        ("assistant", "A heard 5 messages, the first: My name is Ada."),
    ]
    assert history(a, thread) == expected
    assert history(b, thread) == expected
    for server in (a, b):
        assert httpx.get(f"{server.url}/v1/threads/never-{uuid.uuid4().hex}", timeout=30).status_code == 404


def test_concurrent_conversations_alternating_workers_lose_no_turn(workers):
    """Eight conversations at once, each turn on the other worker: every history is complete and in order."""
    turns = 4

    def converse(i: int) -> tuple[str, list[str]]:
        thread = f"scale-{i}-{uuid.uuid4().hex}"
        answers = [ask(workers[(i + k) % 2], thread, f"c{i} turn {k}") for k in range(turns)]
        return thread, answers

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(converse, range(8)))

    for i, (thread, answers) in enumerate(results):
        labels = [workers[(i + k) % 2].label for k in range(turns)]
        assert answers == [f"{labels[k]} heard {2 * k + 1} messages, the first: c{i} turn 0" for k in range(turns)]
        expected = []
        for k in range(turns):
            expected += [("user", f"c{i} turn {k}"), ("assistant", answers[k])]
        assert history(workers[i % 2], thread) == expected
        assert history(workers[(i + 1) % 2], thread) == expected
