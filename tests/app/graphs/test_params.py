"""The generation-settings codec: a chat completion request -> graph state -> `GenerationParams`."""

from __future__ import annotations

import pytest

from prunekit.app.api.schemas import ChatCompletionRequest
from prunekit.app.graphs.params import (
    DEFAULT_MAX_TOKENS,
    OutputConstraint,
    generation_params,
    output_constraint,
    request_params,
)
from prunekit.app.settings import Settings
from prunekit.decoding import GenerationParams, InvalidRequestError
from prunekit.decoding.decog.errors import FormatSpecError

MESSAGES = [{"role": "user", "content": "Hi"}]


def request(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="prunekit-chat", messages=MESSAGES, **fields)


def test_a_silent_request_gets_openai_defaults_and_the_loop_guard() -> None:
    state = request_params(request(), Settings(backend="embedded", repetition_penalty=1.25))
    assert state == {
        "max_tokens": DEFAULT_MAX_TOKENS,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": (),
        "seed": None,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "repetition_penalty": 1.25,
        "format": None,
        "format_method": "decog",
        "grammar": None,
        "logprobs": False,
        "top_logprobs": 0,
        "upstream_fields": None,
    }


def test_the_request_values_round_trip_to_generation_params() -> None:
    body = request(
        max_completion_tokens=12, max_tokens=99, temperature=0.7, top_p=0.9, stop="END", seed=3,
        frequency_penalty=0.5, presence_penalty=-0.5, format="regex:[0-9]+", format_method="hard_mask",
    )  # fmt: skip
    params = generation_params(request_params(body, Settings(backend="openai")))
    assert params == GenerationParams(
        max_tokens=12, temperature=0.7, top_p=0.9, stop=("END",), seed=3, frequency_penalty=0.5,
        presence_penalty=-0.5, repetition_penalty=None, format="regex:[0-9]+", format_method="hard_mask",
    )  # fmt: skip


def test_max_tokens_past_the_server_limit_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="max_tokens must be at most 64, got 65"):
        request_params(request(max_tokens=65), Settings(max_tokens_limit=64))


def test_state_params_come_back_checked() -> None:
    assert generation_params(None) == GenerationParams()
    assert generation_params({"stop": ["\n"], "logits_processors": ()}).stop == ("\n",)
    with pytest.raises(InvalidRequestError, match="unknown generation parameter"):
        generation_params({"max_tokenz": 3})
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        generation_params({"max_tokens": 0})


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def test_response_format_becomes_a_decog_format_with_its_grammar_beside_it() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = request(response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})
    constraint = output_constraint(body)
    assert constraint.format == 'json:{"a": "integer"}' and constraint.grammar
    assert constraint.output == {"kind": "json_schema", "schema": schema}
    state = request_params(body, Settings(backend="embedded", repetition_penalty=1.25), constraint)
    assert state["grammar"] == constraint.grammar and state["repetition_penalty"] is None  # no loop guard on JSON


def test_tools_become_a_grammar_and_a_system_prompt() -> None:
    constraint = output_constraint(request(tools=[TOOL], tool_choice="required"))
    assert constraint.format is None and constraint.grammar and constraint.output["kind"] == "tools"
    assert '"name": "f"' in constraint.output["system"]
    assert output_constraint(request(tools=[TOOL], tool_choice="none")) == OutputConstraint()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"format": "regex:a+", "response_format": {"type": "json_object"}}, "not both"),
        ({"format": "regex:a+", "tools": [TOOL]}, "not both"),
        ({"tool_choice": "required"}, "no tools"),
    ],
)
def test_conflicting_output_fields_are_refused(fields, message) -> None:
    with pytest.raises(FormatSpecError, match=message):
        output_constraint(request(**fields))
