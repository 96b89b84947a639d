"""Conversation threads persist through a checkpointer and survive a service restart."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from app.service import create_app
from app.settings import Settings
from tests.conftest import IN_CI, LiveServer


def ask(url: str, thread: str, text: str) -> dict:
    body = {
        "model": "prunekit-chat",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 6,
        "thread_id": thread,
    }
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def history(url: str, thread: str) -> httpx.Response:
    return httpx.get(f"{url}/v1/threads/{thread}", timeout=30)


def check_survives_restart(settings: Settings, model) -> None:
    thread = f"t-{uuid.uuid4().hex}"
    with LiveServer(create_app(settings, model=model)) as server:
        first = ask(server.url, thread, "My name is Ada.")
    with LiveServer(create_app(settings, model=model)) as server:  # a new process state, same store
        saved = history(server.url, thread).json()["messages"]
        assert [m["role"] for m in saved] == ["user", "assistant"]
        assert saved[0]["content"] == "My name is Ada."
        assert saved[1]["content"] == first["choices"][0]["message"]["content"]
        second = ask(server.url, thread, "What is my name?")
        # the second call sent one message, yet the model saw the whole conversation
        assert second["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"] + 5
        assert len(history(server.url, thread).json()["messages"]) == 4
        assert history(server.url, "no-such-thread").status_code == 404


def test_thread_survives_a_restart_on_sqlite(tmp_path, embedded_model):
    check_survives_restart(Settings(data_dir=tmp_path), embedded_model)


def test_thread_survives_a_restart_on_postgres(tmp_path, embedded_model):
    url = os.environ.get("PRUNEKIT_TEST_DATABASE_URL")
    if not url:
        message = "PRUNEKIT_TEST_DATABASE_URL is not set (.ci/run starts PostgreSQL and sets it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    check_survives_restart(Settings(data_dir=tmp_path, database_url=url), embedded_model)


def test_stateless_requests_keep_no_thread(live_service):
    from tests.conftest import SERVICE_KEY

    headers = {"Authorization": f"Bearer {SERVICE_KEY}"}
    body = {"model": "prunekit-chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    assert (
        httpx.post(f"{live_service.url}/v1/chat/completions", json=body, headers=headers, timeout=120).status_code
        == 200
    )
    bad = {**body, "thread_id": "has spaces"}
    response = httpx.post(f"{live_service.url}/v1/chat/completions", json=bad, headers=headers, timeout=30)
    assert response.status_code == 400 and "thread_id" in response.json()["error"]["message"]


def test_a_thread_belongs_to_the_key_that_made_it(tmp_path, embedded_model):
    settings = Settings(data_dir=tmp_path, api_keys=["k1", "k2"])
    body = {"model": "prunekit-chat", "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 4}
    with LiveServer(create_app(settings, model=embedded_model)) as server:
        as_k1, as_k2 = ({"Authorization": f"Bearer {k}"} for k in ("k1", "k2"))
        made = httpx.post(
            f"{server.url}/v1/chat/completions", json={**body, "thread_id": "shared-name"}, headers=as_k1, timeout=120
        )
        assert made.status_code == 200, made.text
        assert httpx.get(f"{server.url}/v1/threads/shared-name", headers=as_k1).status_code == 200
        assert httpx.get(f"{server.url}/v1/threads/shared-name", headers=as_k2).status_code == 404
        bad = httpx.get(f"{server.url}/v1/threads/bad%20id", headers=as_k1)
        assert 400 <= bad.status_code < 500 and "error" in bad.json()
