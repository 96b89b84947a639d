"""The chat request schema: OpenAI fields prunekit does not implement are named, never silently dropped; the ones
it does (response_format, tools, logprobs) are fields, and tool turns in the history are written for the model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from prunekit.app.api.schemas import ChatCompletionRequest

BASE = {"model": "prunekit-chat", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize(
    ("extra", "named"),
    [
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


@pytest.mark.parametrize(
    "extra",
    [
        {"response_format": {"type": "json_object"}},
        {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"},
        {"logprobs": True, "top_logprobs": 3},
    ],
)
def test_structured_output_fields_are_fields(extra):
    request = ChatCompletionRequest(**BASE, **extra)
    assert request.unsupported_fields() == [] and not set(extra) & set(request.model_extra or {})


def test_tool_turns_are_written_for_the_model():
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
    messages = [
        *BASE["messages"],
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "2"},
    ]
    request = ChatCompletionRequest(model="prunekit-chat", messages=messages)
    written = [m.as_message() for m in request.messages]
    assert written[1] == {
        "role": "assistant",
        "content": '<tool_call>[{"name": "add", "arguments": {"a": 1}}]</tool_call>',
    }
    assert written[2] == {"role": "user", "content": '<tool_response id="c1">\n2\n</tool_response>'}


@pytest.mark.parametrize(
    "message",
    [
        {"role": "user", "content": None},
        {"role": "user", "content": "x", "tool_calls": [{"id": "1"}]},
        {"role": "tool", "content": "x", "tool_call_id": "bad id with spaces"},
    ],
)
def test_malformed_tool_turns_are_refused(message):
    with pytest.raises(ValidationError):
        ChatCompletionRequest(model="prunekit-chat", messages=[message])


@pytest.mark.parametrize("value", [0, -0.5, 2.01, "lots"])
def test_repetition_penalty_out_of_range_is_refused(value):
    with pytest.raises(ValidationError, match="repetition_penalty"):
        ChatCompletionRequest(**BASE, repetition_penalty=value)


def test_repetition_penalty_is_a_field_not_an_unsupported_extra():
    request = ChatCompletionRequest(**BASE, repetition_penalty=1.0)
    assert request.repetition_penalty == 1.0 and "repetition_penalty" not in (request.model_extra or {})
    assert ChatCompletionRequest(**BASE).repetition_penalty is None  # None: the server's guard
