"""The routes' `details` for the chat page: RAG passages with sentences marked kept or dropped (real store, real
pruner), the agent team as a graph (the shipped graph pruner), the SQL result as a bounded, JSON-safe table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunekit.app.databases import DatabaseRegistry
from prunekit.app.graphs.details import (
    MAX_CELL_CHARS,
    MAX_PASSAGE_CHARS,
    MAX_TABLE_COLUMNS,
    MAX_TABLE_ROWS,
    marked_passage,
    sql_table,
)
from prunekit.app.graphs.rag import build_rag_graph
from prunekit.app.graphs.router import RouterResources, build_router_graph
from prunekit.app.rag.documents import Chunk
from prunekit.app.rag.store import VectorStore
from prunekit.context_pruner import default_pruner, split_sentences
from prunekit.decoding.backends.embeddings import load_embedder
from prunekit.graph_pruning import get_pool
from tests.app.graphs.test_rag import DOCS, Scripted, ask
from tests.nl2sql.fakes import ScriptedModel, bag_of_words
from tests.nl2sql.toydb import make_toy_db


def strict_json(value: object) -> object:
    """What a browser's JSON.parse would get: no NaN or Infinity, nothing Python-only."""
    return json.loads(json.dumps(value, allow_nan=False))


# ------------------------------------------------------------------------------------------ RAG


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = VectorStore(load_embedder(), path=tmp_path_factory.mktemp("qdrant"))
    s.add("docs", [Chunk(text=t, source=name, index=0, title=name.split(".")[0]) for name, t in DOCS.items()])
    yield s
    s.close()


def test_every_retrieved_passage_is_marked_and_the_kept_sentences_are_what_the_llm_read(store):
    state = build_rag_graph(Scripted(), store, default_pruner(), top_k=4, keep=2, threshold=0.3).invoke(ask())
    marked = state["marked"]
    assert strict_json(marked) == marked
    assert len(marked) == len(state["retrieved"]) == 4  # every retrieved passage, not only the kept ones
    assert [m["score"] for m in marked] == sorted((m["score"] for m in marked), reverse=True)  # best-reranked first
    used = [m for m in marked if m["used"]]
    assert [(m["source"], m["chunk"]) for m in used] == [(p["source"], p["chunk"]) for p in state["passages"]]
    assert [s["text"] for m in marked for s in m["sentences"] if s["kept"]] == [c["text"] for c in state["citations"]]
    assert not any(s["kept"] for m in marked if not m["used"] for s in m["sentences"])
    eiffel = next(m for m in marked if m["source"] == "eiffel.txt")
    texts = {s["text"]: s for s in eiffel["sentences"]}
    assert texts["Construction was completed in 1889 as the entrance to the World Fair."]["kept"] is True
    stock = texts["The stock market fell sharply on Monday after weak earnings reports from technology firms."]
    assert stock["kept"] is False and 0.0 <= stock["p"] < 0.3  # dropped, below the threshold
    assert len(eiffel["sentences"]) == len(split_sentences(DOCS["eiffel.txt"]))


def test_without_a_pruner_the_sent_passages_are_whole_and_the_rest_dropped(store):
    state = build_rag_graph(Scripted(), store, None, top_k=3, keep=1).invoke(ask())
    marked = state["marked"]
    assert [m["used"] for m in marked] == [True, False, False]
    assert all(s["kept"] for s in marked[0]["sentences"]) and "p" not in marked[0]["sentences"][0]
    assert not any(s["kept"] for m in marked[1:] for s in m["sentences"])
    assert marked[0]["score"] == marked[0]["similarity"]  # the baseline ranks by retrieval alone


def test_a_long_passage_is_cut_to_the_budget():
    text = "A sentence that goes on. " * 400 + "x" * 10_000
    view = marked_passage(
        {"source": "s", "chunk": 0, "text": text, "score": 0.1}, split_sentences(text), {0}, used=True, score=1.0
    )
    assert view["truncated"] is True
    assert sum(len(s["text"]) for s in view["sentences"]) <= MAX_PASSAGE_CHARS + 1  # + the ellipsis


# ------------------------------------------------------------------------------------------ SQL


def test_sql_table_is_bounded_and_json_safe():
    wide = [f"c{i}" for i in range(MAX_TABLE_COLUMNS + 10)]
    rows = [tuple(range(len(wide))) for _ in range(MAX_TABLE_ROWS * 3)]
    table = sql_table(wide, rows, "row cap")
    assert len(table["columns"]) == MAX_TABLE_COLUMNS and len(table["rows"]) == MAX_TABLE_ROWS
    assert all(len(r) == MAX_TABLE_COLUMNS for r in table["rows"])
    assert (table["rows_total"], table["columns_total"], table["rows_truncated"]) == (150, 60, "row cap")
    odd = sql_table(["v"], [(float("nan"),), (float("-inf"),), (b"\x00" * 7,), ("y" * 5000,), (None,), (1.5,)])
    assert strict_json(odd) == odd
    assert [r[0] for r in odd["rows"][:3]] == ["nan", "-inf", "<7 bytes>"]
    assert len(odd["rows"][3][0]) == MAX_CELL_CHARS + 1 and odd["rows"][4:] == [[None], [1.5]]


def respond(messages: list[dict], params: object) -> str:
    prompt = "\n".join(m["content"] for m in messages)
    if "SQL" in prompt or "sql" in prompt:
        return "SELECT name, country FROM singer"
    return "The answer is 42."


@pytest.fixture()
def router(tmp_path: Path):
    db = make_toy_db(tmp_path / "toy.sqlite")
    resources = RouterResources(ScriptedModel(respond), databases=DatabaseRegistry({"toy": db}), embed=bag_of_words)
    return build_router_graph(resources)


def test_sql_route_details_carry_the_table(router):
    final = router.invoke(
        {"messages": [{"role": "user", "content": "Name every singer and country."}], "params": {}, "route": "sql",
         "database": "toy"}
    )  # fmt: skip
    details = final["details"]
    assert details["columns"] == ["name", "country"] and details["error"] is None
    assert len(details["rows"]) == details["rows_total"] > 1 and details["rows_truncated"] is None
    assert strict_json(details) == details


# ------------------------------------------------------------------------------------------ agents


def test_agents_route_details_carry_the_team_graph(router):
    final = router.invoke(
        {"messages": [{"role": "user", "content": "What is 40 plus 2?"}], "params": {}, "route": "agents",
         "domain": "math"}
    )  # fmt: skip
    team, savings = final["details"]["team"], final["savings"]
    assert strict_json(team) == team
    assert [a["name"] for a in team["agents"]] == list(get_pool("math").role_names)
    kept = {a["id"] for a in team["agents"] if a["kept"]}
    assert len(team["agents"]) == savings["agents_total"] and len(kept) == savings["agents_kept"]
    assert all(u in kept and v in kept for u, v in team["edges"])  # edges join agents that ran
    assert len(team["weights"]) == len(team["edges"]) and team["rounds"] >= 1
    assert all(a["calls"] == 0 for a in team["agents"] if not a["kept"])  # a pruned agent never runs
    calls = sum(a["calls"] for a in team["agents"]) + team["decision_calls"]
    assert calls == final["details"]["llm_calls"]
