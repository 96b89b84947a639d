"""What the graphs share: the question a conversation asks, an answer streamed token by token, and the usage a
graph's final state carries.

>>> last_user_text([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
...                 {"role": "user", "content": "How are you?"}])
'How are you?'
>>> usage_state(Usage.call(9, 2))
{'prompt_tokens': 9, 'completion_tokens': 2}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from langgraph.config import get_stream_writer

from prunekit.decoding import ChatModel, ChatResult, GenerationParams, InvalidRequestError, TokenLogprob, Usage
from prunekit.decoding.structured import parse_tool_calls

__all__ = ["last_user_text", "stream_answer", "usage_state"]


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The content of the conversation's last user message: the question the RAG, SQL, agents and auto routes
    answer. A blank last message is refused rather than skipped: answering an older question instead would hide it.
    """
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str) and content.strip():
                return content
            raise InvalidRequestError("the last user message must be non-empty text: it is the question to answer")
    raise InvalidRequestError("the conversation has no user message to answer")


def stream_answer(
    model: ChatModel, messages: list[dict[str, str]], params: GenerationParams, *, hold_calls: bool = False
) -> ChatResult:
    """Stream the model's answer as `{"delta": text}` custom events (with `"logprobs"`, `TokenLogprob`s as
    dicts, when the params ask for them); return the whole answer, why it ended and what it cost (zero tokens when
    the backend reports none).

    With `hold_calls` (a request with tools), nothing is streamed until the answer's first character shows it is
    text: an answer that opens the tool-call envelope (`<`, which a text answer may not start with) is not text,
    and the caller turns it into tool calls."""
    write = get_stream_writer()
    parts: list[str] = []
    finish, usage = "stop", Usage()
    logprobs: list[TokenLogprob] | None = [] if params.logprobs else None
    held: list[dict[str, Any]] | None = [] if hold_calls else None
    tool_calls = None  # a remote server's, whole, on its last chunk
    for chunk in model.stream(messages, params):
        tool_calls = chunk.tool_calls or tool_calls
        event: dict[str, Any] = {"delta": chunk.text} if chunk.text else {}
        parts.append(chunk.text)
        if chunk.logprobs:
            event["logprobs"] = [asdict(item) for item in chunk.logprobs]
            if logprobs is not None:
                logprobs.extend(chunk.logprobs)
        if event and held is not None:
            held.append(event)
            opened = "".join(parts).lstrip()
            if opened and not opened.startswith("<"):
                for waiting in held:
                    write(waiting)
                held = None
        elif event:
            write(event)
        if chunk.finish_reason is not None:
            finish = chunk.finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
    text = "".join(parts)
    if held and parse_tool_calls(text) is None:  # held back, yet no call (cut short by max_tokens): it is text
        for waiting in held:
            write(waiting)
    logprobs_seen = None if logprobs is None else tuple(logprobs)
    return ChatResult(text, finish, usage, logprobs=logprobs_seen, tool_calls=tool_calls)


def usage_state(usage: Usage) -> dict[str, int]:
    """`usage` as the graphs' final states carry it: the LLM's prompt and completion tokens, as plain data
    (the service adds `total_tokens` on the wire, `Usage.as_openai`)."""
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
