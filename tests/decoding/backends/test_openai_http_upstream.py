"""OpenAIModel against upstreams that cut streams or report no usage: scripted faults, then llama-cpp-python's own
server (whose default `interrupt_requests` cuts a running stream when a newer request arrives)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from prunekit.decoding import OpenAIModel
from prunekit.decoding.errors import BackendError, BackendProtocolError, InvalidRequestError
from prunekit.decoding.types import GenerationParams
from tests.conftest import require_part
from tests.fault_server import HI, FaultServer, delta, reply, sse, stream

ROLE_ONLY = json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})


def test_a_stream_cut_before_any_text_is_retried_once():
    cut = stream(sse(ROLE_ONLY, "[DONE]"))
    with FaultServer([cut, stream(sse(delta("ok", "stop"), "[DONE]"))]) as server:
        chunks = list(server.model().stream(HI))
    assert "".join(c.text for c in chunks) == "ok" and server.calls == 2


def test_a_stream_cut_twice_is_an_error_not_an_empty_answer():
    with FaultServer([stream(sse(ROLE_ONLY, "[DONE]"))]) as server:
        with pytest.raises(BackendProtocolError, match="without a finish_reason before any text"):
            list(server.model(max_retries=3).stream(HI))
    assert server.calls == 2  # one retry, not max_retries


def test_a_stream_cut_after_text_is_an_error_without_a_retry():
    with FaultServer([stream(sse(delta("Hel"), "[DONE]"))]) as server:
        with pytest.raises(BackendProtocolError, match="after 1 streamed pieces"):
            list(server.model().stream(HI))
    assert server.calls == 1


def test_usage_is_counted_when_the_server_sends_none():
    with FaultServer([stream(sse(delta("Hello"), delta(" there", "stop"), "[DONE]"))]) as server:
        last = list(server.model().stream([{"role": "user", "content": "Say hello, please."}]))[-1]
    assert last.usage.completion_tokens == 2 and last.usage.prompt_tokens == 5 + 4  # 5 pieces + the message overhead


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (GenerationParams(grammar='start: "x"'), "grammar"),
        (GenerationParams(logprobs=True), "logprobs"),
        (GenerationParams(top_logprobs=3), "logprobs"),
    ],
)
def test_local_only_options_are_refused(params, match):
    with pytest.raises(InvalidRequestError, match=match):
        OpenAIModel("http://127.0.0.1:9/v1", model="m").chat(HI, params)


@pytest.mark.slow
def test_concurrent_streams_against_llama_cpp_server_are_answered_or_fail():
    from prunekit.app.proxy.llama_server import LLAMA_SERVER_MODEL, llama_server, llama_server_available

    require_part(llama_server_available(), "llama-cpp-python's server: pip install 'llama-cpp-python[server]'")
    questions = ["What is 2+2?", "Name a colour.", "Say hi.", "Name a fruit."]
    with llama_server(n_ctx=1024) as base_url:
        model = OpenAIModel(base_url, model=LLAMA_SERVER_MODEL, backoff_s=0.05)

        def ask(question: str) -> object:
            try:
                return list(model.stream([{"role": "user", "content": question}], GenerationParams(max_tokens=12)))
            except BackendError as exc:
                return exc

        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(ask, questions))
        model.close()
    answered = [o for o in outcomes if isinstance(o, list)]
    assert answered, outcomes
    for chunks in answered:  # never an empty success; usage counted although the server streams none
        assert "".join(c.text for c in chunks).strip() and chunks[-1].usage.completion_tokens > 0
        assert chunks[-1].usage.prompt_tokens > 0
    assert all(isinstance(o, list | BackendProtocolError) for o in outcomes)


TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]


def _call_piece(index: int, **fields) -> str:
    piece = {"index": index, **fields}
    return json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [piece]}, "finish_reason": None}]})


def test_upstream_fields_are_forwarded_and_tool_calls_come_back_whole():
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a":1}'}}
    completion = {
        "choices": [{"message": {"content": None, "tool_calls": [call]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }
    fields = {"tools": TOOLS, "tool_choice": "required"}
    with FaultServer([reply(200, json.dumps(completion).encode())]) as server:
        result = server.model().chat(HI, GenerationParams(upstream_fields=fields))
    assert server.bodies[0]["tools"] == TOOLS and server.bodies[0]["tool_choice"] == "required"
    assert result.tool_calls == (call,) and result.text == ""


def test_streamed_tool_call_pieces_are_joined_by_index():
    events = sse(
        _call_piece(0, id="call_a", type="function", function={"name": "add", "arguments": ""}),
        _call_piece(1, id="call_b", type="function", function={"name": "add", "arguments": '{"a":'}),
        _call_piece(0, function={"arguments": '{"a":1}'}),
        _call_piece(1, function={"arguments": "2}"}),
        json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        "[DONE]",
    )
    with FaultServer([stream(events)]) as server:
        chunks = list(server.model().stream(HI, GenerationParams(upstream_fields={"tools": TOOLS})))
    calls = chunks[-1].tool_calls
    assert [(c["id"], c["function"]["arguments"]) for c in calls] == [("call_a", '{"a":1}'), ("call_b", '{"a":2}')]


def test_a_malformed_tool_call_is_a_protocol_error():
    completion = {"choices": [{"message": {"tool_calls": [{"function": {}}]}, "finish_reason": "tool_calls"}]}
    with FaultServer([reply(200, json.dumps(completion).encode())]) as server:
        with pytest.raises(BackendProtocolError, match="malformed completion"):
            server.model().chat(HI)
