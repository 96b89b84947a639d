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
from dataclasses import asdict, dataclass
from functools import partial
from typing import Annotated, Any, TypedDict

from langgraph.channels.untracked_value import UntrackedValue
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph

from prunekit.app.graphs.common import stream_answer, usage_state
from prunekit.app.graphs.params import generation_params
from prunekit.app.threads import ThreadMessages, commit, split_turns
from prunekit.decoding import ChatModel, ChatResult
from prunekit.decoding.backends.context_window import prompt_budget, prompt_tokens
from prunekit.decoding.structured import parse_tool_calls, tool_calls_text

__all__ = ["ChatState", "FittedHistory", "answer_in_context", "build_chat_graph", "fit_history", "with_system_text"]


class ChatState(TypedDict, total=False):
    messages: Annotated[list[dict[str, str]], ThreadMessages()]  # history + this run's messages; answers commit
    params: Annotated[dict[str, Any], UntrackedValue(dict)]  # app.graphs.params' plain data; per run, not stored
    # app.graphs.params.OutputConstraint.output: what to do with a constrained answer (JSON check, tool calls)
    output: Annotated[dict[str, Any] | None, UntrackedValue(object)]
    tool_calls: Annotated[list[dict[str, Any]] | None, UntrackedValue(object)]  # OpenAI's, when the answer calls
    logprobs: Annotated[list[dict[str, Any]] | None, UntrackedValue(object)]  # decoding.TokenLogprob's, as asked
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
    """Fit the conversation, stream the answer, and commit the turn: the chat node of both graphs. A request with
    tools shows them in the system prompt, and an answer in the tool-call envelope comes back as `tool_calls`
    (also written as a `{"tool_calls": [...]}` custom event, for streams)."""
    params = generation_params(state.get("params"))
    output = state.get("output") or {}
    calling = output.get("kind") == "tools"
    conversation = state.get("messages", [])
    shown = calling and output.get("system")  # None: a remote server shows the tools its own way
    prompt = with_system_text(conversation, output["system"]) if shown else conversation
    fitted = fit_history(model, prompt, params.max_tokens)
    result = stream_answer(model, fitted.messages, params, hold_calls=bool(shown))
    calls = _tool_calls(result) if calling else None
    if calls:
        get_stream_writer()({"tool_calls": calls})
    return {
        "messages": commit(conversation, [{"role": "assistant", "content": _turn_text(result)}]),
        "answer": "" if calls else result.text,
        "tool_calls": calls,
        "finish_reason": "tool_calls" if calls else result.finish_reason,
        "usage": usage_state(result.usage),
        "logprobs": None if result.logprobs is None else [asdict(item) for item in result.logprobs],
        "details": {"history_dropped_turns": fitted.dropped_turns},
    }


def _tool_calls(result: ChatResult) -> list[dict[str, Any]] | None:
    """The answer's tool calls in OpenAI's shape: a remote server's own, or the envelope a local model wrote."""
    if result.tool_calls:
        return list(result.tool_calls)
    calls = parse_tool_calls(result.text)
    return [call.as_openai() for call in calls] if calls else None


def _turn_text(result: ChatResult) -> str:
    """What the thread keeps of the answer: its text, with a remote server's tool calls in the envelope."""
    return result.text + tool_calls_text(result.tool_calls) if result.tool_calls else result.text


def with_system_text(messages: Sequence[Mapping[str, Any]], text: str) -> list[dict[str, Any]]:
    """`messages` with `text` added to the leading system message (one is made when there is none).

    >>> with_system_text([{"role": "user", "content": "Hi"}], "Tools: none")
    [{'role': 'system', 'content': 'Tools: none'}, {'role': 'user', 'content': 'Hi'}]
    """
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        out[0]["content"] = f"{out[0]['content']}\n\n{text}"
        return out
    return [{"role": "system", "content": text}, *out]


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
