"""LangGraph graphs that compose the cores; the service and the CLI run these."""

from prunekit.app.graphs.chat import ChatState, build_chat_graph
from prunekit.app.graphs.rag import RagState, UnknownCollectionError, build_rag_graph
from prunekit.app.graphs.router import MODEL_ROUTES, RouterResources, RouterState, build_router_graph

__all__ = [
    "MODEL_ROUTES",
    "ChatState",
    "RagState",
    "RouterResources",
    "RouterState",
    "UnknownCollectionError",
    "build_chat_graph",
    "build_rag_graph",
    "build_router_graph",
]
