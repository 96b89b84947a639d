"""LangGraph graphs that compose the cores; the service and the CLI run these."""

from app.graphs.chat import ChatState, build_chat_graph

__all__ = ["ChatState", "build_chat_graph"]
