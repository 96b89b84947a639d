"""The router's models on the real service (embedded model, real SQLite, official `openai` client):
prunekit-sql, prunekit-agents and prunekit-auto, their savings in `usage`, progress chunks, POST /v1/sql."""

from __future__ import annotations

import hashlib
import json

import httpx
import openai
import pytest

from tests.conftest import SERVICE_KEY, LiveServer
from tests.nl2sql.toydb import make_toy_db


@pytest.fixture(scope="module")
def service(embedded_model, tmp_path_factory):
    from prunekit.app.api.service import create_app
    from prunekit.app.settings import Settings

    root = tmp_path_factory.mktemp("routes")
    db = make_toy_db(root / "concerts.sqlite")
    settings = Settings(api_keys=[SERVICE_KEY], data_dir=root / "data", sql_databases=f"concerts={db}")
    with LiveServer(create_app(settings, model=embedded_model)) as server:
        server.db = db
        yield server


@pytest.fixture()
def client(service) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key=SERVICE_KEY, max_retries=0, timeout=300)


@pytest.fixture()
def http(service):
    with httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {SERVICE_KEY}"}, timeout=300) as c:
        yield c


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_sql_model_answers_with_sql_and_leaves_the_database_untouched(client, service):
    before = hashlib.sha256(service.db.read_bytes()).hexdigest()
    reply = client.chat.completions.create(
        model="prunekit-sql", messages=ask("How many singers are there?"), extra_body={"database": "concerts"}
    )
    extension = reply.model_extra["prunekit"]
    assert extension["route"] == "sql" and "sql" in extension
    assert reply.usage.model_extra["sql_llm_calls"] >= 1 and "sql_repair_calls" in reply.usage.model_extra
    assert reply.choices[0].message.content
    assert hashlib.sha256(service.db.read_bytes()).hexdigest() == before


def test_sql_stream_with_progress_chunks(http):
    body = {
        "model": "prunekit-sql",
        "messages": ask("List the names of all singers."),
        "database": "concerts",
        "stream": True,
        "progress": True,
        "stream_options": {"include_usage": True},
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        data = [
            json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:") and "[DONE]" not in line
        ]
    stages = [
        d["prunekit"]["progress"]["stage"] for d in data if not d["choices"] and "progress" in d.get("prunekit", {})
    ]
    assert stages == ["sql", "executed"]
    finish = [d for d in data if d["choices"] and d["choices"][0]["finish_reason"]]
    assert finish[0]["prunekit"]["route"] == "sql"
    assert "sql_repair_calls" in data[-1]["usage"]


def test_a_database_off_the_allow_list_is_a_404_even_for_a_stream(http):
    for stream in (False, True):
        body = {"model": "prunekit-sql", "messages": ask("x?"), "database": "passwd", "stream": stream}
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 404
        assert "allow-list" in response.json()["error"]["message"]
    response = http.post(
        "/v1/chat/completions", json={"model": "prunekit-sql", "messages": ask("x?"), "database": "../x"}
    )
    assert response.status_code == 400  # not even a valid name


def test_sql_endpoint(http):
    response = http.post("/v1/sql", json={"question": "How many concerts are there?", "database": "concerts"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "sql.result" and "db_path" not in body and body["llm_calls"] >= 1
    assert http.post("/v1/sql", json={"question": "x", "database": "nope"}).status_code == 404
    assert http.post("/v1/sql", json={"question": "x", "database": "concerts", "path": "/etc"}).status_code == 400
    assert http.get("/v1/sql/databases").json()["data"] == ["concerts"]


def test_agents_model_reports_avoided_calls(client):
    reply = client.chat.completions.create(model="prunekit-agents", messages=ask("What is 3 plus 4?"), max_tokens=64)
    usage = reply.usage.model_extra
    assert usage["agents_total"] >= usage["agents_kept"] >= 1
    pruned = usage["agents_total"] - usage["agents_kept"]
    assert usage["agent_calls_avoided"] >= pruned  # each pruned agent skips one call per round, at least one round
    assert usage["agent_calls_avoided"] % max(pruned, 1) == 0
    assert reply.model_extra["prunekit"]["route"] == "agents"


def test_rag_without_documents_is_a_404(http):
    body = {"model": "prunekit-rag", "messages": ask("What does the manual say?"), "collection": "empty"}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 404 and "ingest" in response.json()["error"]["message"]


def test_auto_picks_a_route_and_says_which(client):
    reply = client.chat.completions.create(
        model="prunekit-auto", messages=ask("Write one sentence about the sea."), max_tokens=24
    )
    assert reply.model_extra["prunekit"]["route"] in {"chat", "agents"}  # no collection, no database given
    assert reply.choices[0].message.content
