"""The graphs as `langgraph dev` (LangGraph Studio / LangGraph Server) loads them from `langgraph.json`.

Each entry is a factory that builds the same graph the service runs, on the model and resources the
`PRUNEKIT_*` settings describe. The LangGraph server brings its own persistence, so no checkpointer
is attached here. Run: `pip install "langgraph-cli[inmem]"`, then `langgraph dev` in the repo root.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prunekit.app.graphs.chat import build_chat_graph
from prunekit.app.graphs.router import RouterResources, build_router_graph
from prunekit.app.settings import Settings

__all__ = ["chat", "rag", "router"]


@lru_cache(maxsize=1)
def _resources() -> RouterResources:
    from prunekit.app.backends import build_chat_model

    settings = Settings()
    return RouterResources.from_settings(settings, build_chat_model(settings))


def router(config: Any = None) -> Any:
    """Every prunekit model in one graph: set `route` (chat | rag | sql | agents | auto) in the input."""
    return build_router_graph(_resources())


def chat(config: Any = None) -> Any:
    """The plain chat graph."""
    return build_chat_graph(_resources().model)


def rag(config: Any = None) -> Any:
    """Retrieve, prune and rerank, answer, cite: set `collection` in the input."""
    return _resources().rag_graph()
