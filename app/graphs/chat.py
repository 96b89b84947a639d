"""The plain chat graph: one `generate` node that streams the model's answer.

Streaming goes through LangGraph's custom stream (`stream_mode="custom"`): the node writes
`{"delta": text}` events as tokens arrive, and the final state carries the whole answer and usage.
Later graphs (RAG, SQL, agents) plug into the router beside this one.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph

from decoding import ChatModel, GenerationParams

__all__ = ["ChatState", "build_chat_graph", "params_to_state"]


class ChatState(TypedDict, total=False):
    messages: list[dict[str, str]]
    params: dict[str, Any]  # GenerationParams as plain data, so a checkpointer can store it
    answer: str
    finish_reason: str
    usage: dict[str, int]


def params_to_state(params: GenerationParams) -> dict[str, Any]:
    data = asdict(params)
    data.pop("logits_processors")
    return data


def build_chat_graph(model: ChatModel) -> Any:
    """Compile the chat graph for `model`.

    >>> graph = build_chat_graph(model)  # doctest: +SKIP
    >>> graph.invoke({"messages": [{"role": "user", "content": "Hi"}], "params": {}})["answer"]  # doctest: +SKIP
    """

    def generate(state: ChatState) -> ChatState:
        write = get_stream_writer()
        params = GenerationParams(**state.get("params", {}))
        parts: list[str] = []
        finish, usage = "stop", {"prompt_tokens": 0, "completion_tokens": 0}
        for chunk in model.stream(state["messages"], params):
            if chunk.text:
                parts.append(chunk.text)
                write({"delta": chunk.text})
            if chunk.finish_reason is not None:
                finish = chunk.finish_reason
            if chunk.usage is not None:
                usage = {"prompt_tokens": chunk.usage.prompt_tokens, "completion_tokens": chunk.usage.completion_tokens}
        return {"answer": "".join(parts), "finish_reason": finish, "usage": usage}

    graph = StateGraph(ChatState)
    graph.add_node("generate", generate)
    graph.add_edge(START, "generate")
    graph.add_edge("generate", END)
    return graph.compile()
