"""The chat graph fits a conversation to the model's context window (scripted models; no real LLM)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from prunekit.app.graphs.chat import _most_that_fit, build_chat_graph, fit_history
from prunekit.decoding import GenerationParams, InvalidRequestError
from prunekit.decoding.backends.context_window import CHARS_PER_TOKEN, FALLBACK_CONTEXT_TOKENS, prompt_tokens
from prunekit.decoding.cancel import check_cancelled
from prunekit.decoding.errors import BackendError
from prunekit.decoding.types import ChatChunk, ChatResult, Usage, collect


class WindowModel:
    """A scripted chat model with a small context window, strict like the real backends.

    One token a word plus 4 a message (what `prompt_tokens` counts through `tokenize`); a prompt + max_tokens
    past `context_length` raises `InvalidRequestError` (a 400 at the service); a last message containing
    `fail_on` raises `BackendError` (a model failure). It records every prompt it accepted and streams its
    reply word by word, `delay_s` apart, checking for cancellation between words like a real token loop.
    """

    name = "window"

    def __init__(self, context_length: int = 200, fail_on: str = "boom", delay_s: float = 0.0) -> None:
        self.context_length = context_length
        self.fail_on = fail_on
        self.delay_s = delay_s
        self.prompts: list[list[dict[str, Any]]] = []

    def tokenize(self, text: str) -> list[str]:
        return text.split()

    def count(self, messages: Sequence[Mapping[str, Any]]) -> int:
        return sum(len(self.tokenize(str(m["content"]))) + 4 for m in messages)

    def stream(
        self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None = None
    ) -> Iterator[ChatChunk]:
        params = params or GenerationParams()
        prompt = [dict(m) for m in messages]
        n = self.count(prompt)
        if n + params.max_tokens > self.context_length:
            raise InvalidRequestError(
                f"prompt ({n} tokens) + max_tokens ({params.max_tokens}) exceeds the model's context of "
                f"{self.context_length} tokens: shorten the prompt or lower max_tokens"
            )
        if self.fail_on in str(prompt[-1]["content"]):
            raise BackendError("the scripted model failed")
        self.prompts.append(prompt)
        return self._reply(n, f"reply {len(self.prompts)} after {len(prompt)} messages")

    def _reply(self, prompt_tokens: int, text: str) -> Iterator[ChatChunk]:
        words = text.split()
        for word in words:
            check_cancelled()
            yield ChatChunk(word + " ")
            time.sleep(self.delay_s)
        yield ChatChunk("", "stop", Usage(prompt_tokens, len(words)))

    def chat(self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None = None) -> ChatResult:
        return collect(self.stream(messages, params), model=self.name)


PARAMS = {"max_tokens": 8}


def words(n: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def conversation(turns: int, size: int = 20) -> list[dict[str, str]]:
    out = [{"role": "system", "content": "Be brief."}]
    for t in range(turns):
        out += [{"role": "user", "content": words(size, f"q{t}-")}, {"role": "assistant", "content": words(5)}]
    return [*out, {"role": "user", "content": "And now?"}]


def test_fit_keeps_the_system_messages_and_the_newest_turns() -> None:
    model = WindowModel(context_length=200)
    messages = conversation(10)
    fitted = fit_history(model, messages, max_tokens=8)
    assert fitted.messages[0] == messages[0]  # the system message stays
    assert fitted.messages[-1] == messages[-1]  # the new question stays
    assert fitted.messages[1:] == messages[len(messages) - len(fitted.messages) + 1 :]  # a contiguous newest tail
    kept_turns = sum(1 for m in fitted.messages if m["role"] == "user")
    assert kept_turns + fitted.dropped_turns == 11 and fitted.dropped_turns > 0
    # within budget: context - max_tokens - margin, and one more turn would not be
    assert model.count(fitted.messages) + 8 <= model.context_length
    one_more = messages[:1] + messages[len(messages) - len(fitted.messages) - 1 :]
    assert model.count(one_more) > 200 - 8 - 32 - 200 // 8


def test_fit_sends_everything_when_it_fits() -> None:
    messages = conversation(2)
    fitted = fit_history(WindowModel(context_length=1000), messages, max_tokens=8)
    assert fitted.messages == messages and fitted.dropped_turns == 0


def test_fit_always_sends_the_newest_turn() -> None:
    messages = [{"role": "user", "content": words(500)}]
    fitted = fit_history(WindowModel(context_length=100), messages, max_tokens=8)
    assert fitted.messages == messages and fitted.dropped_turns == 0  # too long alone: the model refuses it


def test_fit_counts_exactly_with_the_models_chat_template() -> None:
    class Templated:
        name, context_length = "templated", 100

        def encode_chat(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
            return [0] * (3 + sum(len(str(m["content"]).split()) + 5 for m in messages))

    messages = conversation(6, size=10)
    fitted = fit_history(Templated(), messages, max_tokens=10)
    assert len(Templated().encode_chat(fitted.messages)) <= 100 - 10 - 32  # exact: only the fixed margin
    assert fitted.dropped_turns == 5


def test_the_estimate_without_a_tokenizer() -> None:
    class Remote:
        name = "remote"

    messages = [{"role": "user", "content": "x" * 41}, {"role": "assistant", "content": ""}]
    assert prompt_tokens(Remote(), messages) == -(-41 // CHARS_PER_TOKEN) + 4 + 4
    long = [{"role": "user", "content": "x" * 4 * FALLBACK_CONTEXT_TOKENS}] * 2 + [{"role": "user", "content": "hi"}]
    assert fit_history(Remote(), long, max_tokens=16).dropped_turns == 2  # an 8k window is assumed


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 33])
def test_most_that_fit_finds_the_largest(n: int) -> None:
    for limit in range(0, n + 2):
        asked: list[int] = []

        def fits(k: int, limit: int = limit, asked: list[int] = asked) -> bool:
            asked.append(k)
            return k <= limit

        assert _most_that_fit(n, fits) == max(1, min(n, limit))
        assert all(1 <= k <= n for k in asked)


def test_chat_graph_reports_dropped_turns_and_commits_only_answers() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    model = WindowModel(context_length=120)
    graph = build_chat_graph(model, InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    dropped = []
    for t in range(8):
        final = graph.invoke({"messages": [{"role": "user", "content": words(20, f"q{t}-")}], "params": PARAMS}, config)
        dropped.append(final["details"]["history_dropped_turns"])
    assert dropped[0] == 0 and dropped[-1] > 0 and dropped == sorted(dropped)
    assert len(graph.get_state(config).values["messages"]) == 16  # storage keeps the whole conversation
    with pytest.raises(BackendError):
        graph.invoke({"messages": [{"role": "user", "content": "boom"}], "params": PARAMS}, config)
    assert len(graph.get_state(config).values["messages"]) == 16
