"""The plain chat graph: one `generate` node that streams the model's answer.

Streaming goes through LangGraph's custom stream (`stream_mode="custom"`): the node writes
`{"delta": text}` events as tokens arrive, and the final state carries the whole answer and usage.
`messages` accumulates (the answer is appended), so with a checkpointer and a `thread_id` the graph
keeps a conversation: each call sends only the new messages.
"""

from __future__ import annotations

import operator
from dataclasses import asdict
from typing import Annotated, Any, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph

from decoding import ChatModel, GenerationParams

__all__ = ["ChatState", "build_chat_graph", "params_to_state", "stream_answer"]


class ChatState(TypedDict, total=False):
    messages: Annotated[list[dict[str, str]], operator.add]  # history; nodes append
    params: dict[str, Any]  # GenerationParams as plain data, so a checkpointer can store it
    answer: str
    finish_reason: str
    usage: dict[str, int]


def params_to_state(params: GenerationParams) -> dict[str, Any]:
    data = asdict(params)
    data.pop("logits_processors")
    return data


def stream_answer(
    model: ChatModel, messages: list[dict[str, str]], params: GenerationParams
) -> tuple[str, str, dict[str, int]]:
    """Stream the model's answer as `{"delta": text}` custom events; return (answer, finish_reason, usage)."""
    write = get_stream_writer()
    parts: list[str] = []
    finish, usage = "stop", {"prompt_tokens": 0, "completion_tokens": 0}
    for chunk in model.stream(messages, params):
        if chunk.text:
            parts.append(chunk.text)
            write({"delta": chunk.text})
        if chunk.finish_reason is not None:
            finish = chunk.finish_reason
        if chunk.usage is not None:
            usage = {"prompt_tokens": chunk.usage.prompt_tokens, "completion_tokens": chunk.usage.completion_tokens}
    return "".join(parts), finish, usage


def build_chat_graph(model: ChatModel, checkpointer: Any = None) -> Any:
    """Compile the chat graph for `model` (with a checkpointer, invoke it with a `thread_id`).

    >>> graph = build_chat_graph(model)  # doctest: +SKIP
    >>> graph.invoke({"messages": [{"role": "user", "content": "Hi"}], "params": {}})["answer"]  # doctest: +SKIP
    """

    def generate(state: ChatState) -> ChatState:
        answer, finish, usage = stream_answer(model, state["messages"], GenerationParams(**state.get("params", {})))
        return {
            "messages": [{"role": "assistant", "content": answer}],
            "answer": answer,
            "finish_reason": finish,
            "usage": usage,
        }

    graph = StateGraph(ChatState)
    graph.add_node("generate", generate)
    graph.add_edge(START, "generate")
    graph.add_edge("generate", END)
    return graph.compile(checkpointer=checkpointer)
