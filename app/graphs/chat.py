"""The plain chat graph: one `generate` node that streams the model's answer.

Streaming goes through LangGraph's custom stream (`stream_mode="custom"`): the node writes
`{"delta": text}` events as tokens arrive, and the final state carries the whole answer and usage.
`messages` is a thread (`app.threads.ThreadMessages`): with a checkpointer and a `thread_id` the graph
keeps a conversation, each call sends only the new messages, and a turn is stored only once answered.

What reaches the model is the conversation fitted to its context window (`fit_history`): the system
messages and the newest turns that fit; `details["history_dropped_turns"]` says how many were left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, TypedDict

from langgraph.channels.untracked_value import UntrackedValue
from langgraph.graph import END, START, StateGraph

from prunekit.app.graphs.common import stream_answer, usage_state
from prunekit.app.graphs.params import generation_params
from prunekit.app.threads import ThreadMessages, commit, split_turns
from prunekit.decoding import ChatModel
from prunekit.decoding.backends.context_window import prompt_budget, prompt_tokens

__all__ = ["ChatState", "FittedHistory", "answer_in_context", "build_chat_graph", "fit_history"]


class ChatState(TypedDict, total=False):
    messages: Annotated[list[dict[str, str]], ThreadMessages()]  # history + this run's messages; answers commit
    params: Annotated[dict[str, Any], UntrackedValue(dict)]  # app.graphs.params' plain data; per run, not stored
    answer: str
    finish_reason: str
    usage: dict[str, int]
    details: dict[str, Any]


@dataclass(frozen=True)
class FittedHistory:
    """The messages to send and how many of the conversation's turns were left out to fit them."""

    messages: list[dict[str, Any]]
    dropped_turns: int = 0


def _most_that_fit(n: int, fits: Callable[[int], bool]) -> int:
    """The largest k in [1, n] with `fits(k)`, for a `fits` true up to some k and false after; 1 when none fits.

    Galloping from 1, then bisecting: the prompts counted stay near the size of what is kept, not of the
    whole thread.
    """
    good, step = 1, 1
    while good < n:
        probe = min(n, good + step)
        if not fits(probe):
            break
        good, step = probe, step * 2
    else:
        return good
    bad = probe
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


def fit_history(model: ChatModel, messages: Sequence[Mapping[str, Any]], max_tokens: int) -> FittedHistory:
    """The conversation as it fits `model`'s context with room for `max_tokens`: the leading system messages
    and the newest turns that fit. The newest turn always goes (when it alone is too long, the model says so).

    >>> class Small: name, context_length = "small", 120
    >>> turns = [{"role": r, "content": "word " * 40} for r in ("user", "assistant", "user")]
    >>> fitted = fit_history(Small(), turns, max_tokens=16)
    >>> len(fitted.messages), fitted.dropped_turns
    (1, 1)
    """
    system, turns = split_turns(messages)
    if len(turns) <= 1:
        return FittedHistory([dict(m) for m in messages])
    budget = prompt_budget(model, max_tokens)

    def with_newest(k: int) -> list[dict[str, Any]]:
        return system + [m for turn in turns[len(turns) - k :] for m in turn]

    kept = _most_that_fit(len(turns), lambda k: prompt_tokens(model, with_newest(k)) <= budget)
    return FittedHistory(with_newest(kept), len(turns) - kept)


def answer_in_context(model: ChatModel, state: Mapping[str, Any]) -> dict[str, Any]:
    """Fit the conversation, stream the answer, and commit the turn: the chat node of both graphs."""
    params = generation_params(state.get("params"))
    conversation = state.get("messages", [])
    fitted = fit_history(model, conversation, params.max_tokens)
    result = stream_answer(model, fitted.messages, params)
    return {
        "messages": commit(conversation, [{"role": "assistant", "content": result.text}]),
        "answer": result.text,
        "finish_reason": result.finish_reason,
        "usage": usage_state(result.usage),
        "details": {"history_dropped_turns": fitted.dropped_turns},
    }


def build_chat_graph(model: ChatModel, checkpointer: Any = None) -> Any:
    """Compile the chat graph for `model` (with a checkpointer, invoke it with a `thread_id`).

    >>> from prunekit.decoding import ChatChunk, Usage
    >>> class Hello:  # a scripted stand-in for any ChatModel: load_embedded(), OpenAIModel(...)
    ...     name = "hello"
    ...     def stream(self, messages, params=None):
    ...         yield ChatChunk("Hello!", "stop", Usage(prompt_tokens=9, completion_tokens=2))
    >>> graph = build_chat_graph(Hello())
    >>> state = graph.invoke({"messages": [{"role": "user", "content": "Hi"}], "params": {"max_tokens": 16}})
    >>> state["answer"], state["usage"]
    ('Hello!', {'prompt_tokens': 9, 'completion_tokens': 2})
    """
    graph = StateGraph(ChatState)
    graph.add_node("generate", partial(answer_in_context, model))
    graph.add_edge(START, "generate")
    graph.add_edge("generate", END)
    return graph.compile(checkpointer=checkpointer)
