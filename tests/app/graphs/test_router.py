"""The router graph: each route's answer, usage, savings and stream events (scripted model, real SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prunekit.app.databases import DatabaseRegistry
from prunekit.app.graphs.router import RouterResources, build_router_graph
from prunekit.decoding import InvalidRequestError, NotFoundError
from tests.nl2sql.fakes import ScriptedModel, bag_of_words
from tests.nl2sql.toydb import make_toy_db


def respond(messages: list[dict], params: object) -> str:
    prompt = "\n".join(m["content"] for m in messages)
    if "SQL" in prompt or "sql" in prompt:
        return "SELECT count(*) FROM singer"
    return "The answer is 42."


@pytest.fixture
def graph(tmp_path: Path):
    db = make_toy_db(tmp_path / "toy.sqlite")
    model = ScriptedModel(respond)
    resources = RouterResources(model, databases=DatabaseRegistry({"toy": db}), embed=bag_of_words)
    return build_router_graph(resources), model


def run(graph, **state):
    state.setdefault("params", {})
    events, final = [], {}
    for mode, payload in graph.stream(state, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(payload)
        else:
            final = payload
    return events, final


def test_chat_route_streams_the_answer(graph) -> None:
    g, _ = graph
    events, final = run(g, messages=[{"role": "user", "content": "Hi"}], route="chat")
    assert final["answer"] == "The answer is 42."
    assert "".join(e["delta"] for e in events if "delta" in e) == final["answer"]
    assert final["messages"][-1] == {"role": "assistant", "content": "The answer is 42."}
    assert final["usage"]["completion_tokens"] == 4 and final["savings"] == {}


def test_sql_route_answers_with_the_query_and_rows(graph) -> None:
    g, model = graph
    events, final = run(
        g, messages=[{"role": "user", "content": "How many singers are there?"}], route="sql", database="toy"
    )
    details = final["details"]
    assert details["sql"].lower().startswith("select count(*) from singer")
    assert details["rows"] and details["error"] is None
    assert "```sql" in final["answer"] and "".join(e.get("delta", "") for e in events) == final["answer"]
    assert [e["progress"]["stage"] for e in events if "progress" in e] == ["sql", "executed"]
    assert final["savings"]["sql_llm_calls"] == len(model.calls) > 0
    assert final["savings"]["sql_repair_calls"] == 0
    assert final["usage"]["prompt_tokens"] > 0


def test_sql_route_refuses_names_off_the_allow_list(graph) -> None:
    g, _ = graph
    with pytest.raises(NotFoundError, match="allow-list"):
        run(g, messages=[{"role": "user", "content": "x?"}], route="sql", database="/etc/passwd")
    with pytest.raises(InvalidRequestError, match="needs a `database`"):
        run(g, messages=[{"role": "user", "content": "x?"}], route="sql")


def test_agents_route_reports_the_calls_it_avoided(graph) -> None:
    g, model = graph
    events, final = run(g, messages=[{"role": "user", "content": "What is 40 plus 2?"}], route="agents", domain="math")
    savings = final["savings"]
    assert savings["agents_total"] >= savings["agents_kept"] >= 1
    assert savings["agent_calls_avoided"] >= 0
    assert final["details"]["llm_calls"] == len(model.calls)  # pruned agents made no call
    assert final["usage"]["prompt_tokens"] > 0
    assert any("progress" in e and e["progress"]["stage"] == "team" for e in events)


def test_auto_route_only_considers_available_routes(graph) -> None:
    g, _ = graph
    events, final = run(g, messages=[{"role": "user", "content": "Hello there"}], route="auto")
    chosen = next(e["progress"] for e in events if "progress" in e and e["progress"]["stage"] == "route")
    assert "sql" not in chosen["candidates"] and "rag" not in chosen["candidates"]  # no database, no store
    assert final["route"] == chosen["route"] in {"chat", "agents"}


def test_a_conversation_without_a_user_message_is_refused(graph) -> None:
    g, _ = graph
    with pytest.raises(InvalidRequestError, match="no user message"):
        run(g, messages=[{"role": "system", "content": "be brief"}], route="sql", database="toy")


def test_registry_reads_a_folder_and_named_entries(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    make_toy_db(tmp_path / "a" / "a.sqlite")
    make_toy_db(tmp_path / "b.sqlite")
    registry = DatabaseRegistry({"c": tmp_path / "b.sqlite"}, tmp_path)
    assert registry.names() == ["a", "b", "c"]
    assert registry.path("a") == (tmp_path / "a" / "a.sqlite").resolve()
    registry = DatabaseRegistry({"gone": tmp_path / "nope.sqlite"})
    with pytest.raises(NotFoundError, match="missing"):
        registry.path("gone")


def test_resources_from_settings_take_what_the_settings_name(tmp_path: Path) -> None:
    from prunekit.app.settings import Settings

    db = make_toy_db(tmp_path / "shop.sqlite")
    settings = Settings(sql_databases=f"shop={db}", rag_collection="notes", code_execution="sandbox", data_dir=tmp_path)
    model = ScriptedModel(respond)
    resources = RouterResources.from_settings(settings, model)
    assert resources.model is model and resources.databases.names() == ["shop"]
    assert (resources.default_collection, resources.code_execution) == ("notes", "sandbox")
    assert resources.vector_store is None and not (tmp_path / "qdrant").exists()  # the store opens on first use


def test_a_blank_last_question_is_refused_not_replaced_by_an_earlier_one(graph) -> None:
    g, model = graph
    messages = [
        {"role": "user", "content": "How many singers are there?"},
        {"role": "assistant", "content": "Six."},
        {"role": "user", "content": " "},
    ]
    with pytest.raises(InvalidRequestError, match="last user message must be non-empty"):
        run(g, messages=messages, route="sql", database="toy")
    assert model.calls == []


def test_the_sql_route_runs_the_sql_tuned_embedded_model_unless_told_otherwise() -> None:
    from prunekit.app.settings import Settings

    class Named:
        name = "given"

    given = Named()
    tuned = RouterResources.from_settings(Settings(), given)  # type: ignore[arg-type]
    model = tuned.sql_model()
    try:
        assert model is not given and model.name == "SmolLM2-135M-Instruct+learnat-smollm2"
        assert tuned.sql_model() is model  # loaded once
    finally:
        tuned.close()
    assert RouterResources.from_settings(Settings(sql_adapter="none"), given).sql_model() is given  # type: ignore[arg-type]
    assert RouterResources.from_settings(Settings(), given, tuned_sql=False).sql_model() is given  # type: ignore[arg-type]
