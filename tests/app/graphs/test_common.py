"""The graphs' shared helpers: the question of a conversation, the streamed answer, the usage of a final state."""

from __future__ import annotations

from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from prunekit.app.graphs.common import last_user_text, stream_answer, usage_state
from prunekit.decoding import ChatChunk, GenerationParams, InvalidRequestError, Usage


def test_last_user_text_is_the_last_user_message_as_sent() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First?"},
        {"role": "assistant", "content": "One."},
        {"role": "user", "content": " Second?\n"},
    ]
    assert last_user_text(messages) == " Second?\n"


def test_a_blank_last_user_message_is_refused_not_skipped() -> None:
    messages = [{"role": "user", "content": "First?"}, {"role": "assistant", "content": "One."}]
    with pytest.raises(InvalidRequestError, match="last user message must be non-empty"):
        last_user_text([*messages, {"role": "user", "content": "  "}])
    with pytest.raises(InvalidRequestError, match="no user message"):
        last_user_text([{"role": "system", "content": "Be brief."}])


class _State(TypedDict, total=False):
    text: str
    finish: str
    usage: dict[str, int]


class _Words:
    name = "words"

    def __init__(self, usage: Usage | None) -> None:
        self.usage = usage

    def stream(self, messages: Any, params: Any = None):
        yield ChatChunk("Two ")
        yield ChatChunk("")
        yield ChatChunk("words.", "length", self.usage)


def _run(model: _Words) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    def node(state: _State) -> _State:
        result = stream_answer(model, [{"role": "user", "content": "Hi"}], GenerationParams())
        return {"text": result.text, "finish": result.finish_reason, "usage": usage_state(result.usage)}

    graph = StateGraph(_State)
    graph.add_node("node", node)
    graph.add_edge(START, "node")
    graph.add_edge("node", END)
    events, final = [], {}
    for mode, payload in graph.compile().stream({}, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(payload)
        else:
            final = payload
    return events, final


def test_stream_answer_writes_each_piece_and_returns_the_whole() -> None:
    events, final = _run(_Words(Usage(prompt_tokens=7, completion_tokens=2)))
    assert events == [{"delta": "Two "}, {"delta": "words."}]  # empty pieces are not sent
    assert final["text"] == "Two words." and final["finish"] == "length"
    assert final["usage"] == {"prompt_tokens": 7, "completion_tokens": 2}


def test_a_backend_that_reports_no_usage_counts_zero() -> None:
    _, final = _run(_Words(None))
    assert final["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}
