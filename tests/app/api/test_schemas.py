"""The chat request schema: OpenAI fields prunekit does not implement are named, never silently dropped."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from prunekit.app.api.schemas import ChatCompletionRequest

BASE = {"model": "prunekit-chat", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"response_format": {"type": "json_object"}}, ["response_format"]),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, ["response_format"]),
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"},
            ["tools", "tool_choice"],
        ),
        ({"logprobs": True, "top_logprobs": 3}, ["logprobs", "top_logprobs"]),
        ({"logit_bias": {"50256": -100}}, ["logit_bias"]),
        ({"functions": [{"name": "f"}], "function_call": {"name": "f"}}, ["functions", "function_call"]),
        ({"modalities": ["text", "audio"]}, ["modalities"]),
    ],
)
def test_unsupported_fields_are_named(extra, named):
    assert ChatCompletionRequest(**BASE, **extra).unsupported_fields() == named


@pytest.mark.parametrize(
    "extra",
    [
        {"response_format": {"type": "text"}},
        {"logprobs": False},
        {"tool_choice": "none"},
        {"tools": []},
        {"user": "someone", "metadata": {"a": "b"}, "store": False, "service_tier": "auto"},
        {"parallel_tool_calls": True},
        {"modalities": ["text"]},
    ],
)
def test_fields_that_ask_for_nothing_pass(extra):
    assert ChatCompletionRequest(**BASE, **extra).unsupported_fields() == []


@pytest.mark.parametrize("seed", [2**63, 2**64, -(2**63) - 1])
def test_seed_is_a_64_bit_signed_integer(seed):
    with pytest.raises(ValidationError):
        ChatCompletionRequest(**BASE, seed=seed)
    assert ChatCompletionRequest(**BASE, seed=2**63 - 1).seed == 2**63 - 1


def test_an_assistant_tool_call_in_the_history_is_refused():
    messages = [*BASE["messages"], {"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}]
    with pytest.raises(ValidationError, match="tool calls are not supported"):
        ChatCompletionRequest(model="prunekit-chat", messages=messages)


@pytest.mark.parametrize("value", [0, -0.5, 2.01, "lots"])
def test_repetition_penalty_out_of_range_is_refused(value):
    with pytest.raises(ValidationError, match="repetition_penalty"):
        ChatCompletionRequest(**BASE, repetition_penalty=value)


def test_repetition_penalty_is_a_field_not_an_unsupported_extra():
    request = ChatCompletionRequest(**BASE, repetition_penalty=1.0)
    assert request.repetition_penalty == 1.0 and "repetition_penalty" not in (request.model_extra or {})
    assert ChatCompletionRequest(**BASE).repetition_penalty is None  # None: the server's guard
