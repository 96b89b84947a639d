"""`langgraph.json` names graphs that exist and build: what `langgraph dev` loads."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def graph_entries() -> dict[str, str]:
    return json.loads((REPO / "langgraph.json").read_text())["graphs"]


def load_factory(entry: str):
    path, _, name = entry.partition(":")
    spec = importlib.util.spec_from_file_location("studio_under_test", REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, getattr(module, name)


def test_config_names_existing_factories():
    entries = graph_entries()
    assert set(entries) == {"prunekit-router", "prunekit-chat", "prunekit-rag"}
    for entry in entries.values():
        _, factory = load_factory(entry)
        assert callable(factory)


@pytest.mark.parametrize("name", ["prunekit-router", "prunekit-chat"])
def test_the_graphs_build_and_answer(name, embedded_model, monkeypatch):
    module, factory = load_factory(graph_entries()[name])
    from prunekit.app.graphs.router import RouterResources

    monkeypatch.setattr(module, "_resources", lambda: RouterResources(embedded_model))
    graph = factory({})
    state = {"messages": [{"role": "user", "content": "Say hello."}], "params": {"max_tokens": 8}, "route": "chat"}
    assert graph.invoke(state)["answer"]
