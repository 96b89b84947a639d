"""OpenAIModel against a fault-injecting local HTTP server and against the live prunekit service."""

from __future__ import annotations

import json
import time

import pytest

from prunekit.decoding import OpenAIModel
from prunekit.decoding.errors import (
    BackendConnectionError,
    BackendError,
    BackendHTTPError,
    BackendProtocolError,
    BackendTimeoutError,
    InvalidRequestError,
)
from prunekit.decoding.types import GenerationParams
from tests.conftest import SERVICE_KEY, free_port
from tests.fault_server import HI, FaultServer, delta, error, ok, reply, sleep, sse, stream


def test_a_plain_completion_and_the_request_body():
    with FaultServer([ok()]) as server:
        result = server.model(api_key="k").chat(HI, GenerationParams(max_tokens=5, stop=("x",), seed=1))
    assert (result.text, result.usage.total_tokens) == ("Hello", 4)
    body = server.bodies[0]
    assert body["max_tokens"] == 5 and body["stop"] == ["x"] and body["seed"] == 1 and body["stream"] is False
    assert "frequency_penalty" not in body and "presence_penalty" not in body  # the server's defaults apply
    assert "repetition_penalty" not in body  # not OpenAI's: its API would answer 400


def test_penalties_are_passed_on():
    with FaultServer([ok()]) as server:
        server.model().chat(HI, GenerationParams(frequency_penalty=0.5, presence_penalty=-0.25))
    assert (server.bodies[0]["frequency_penalty"], server.bodies[0]["presence_penalty"]) == (0.5, -0.25)


@pytest.mark.parametrize("value", [1.0, 1.15])
def test_a_repetition_penalty_set_explicitly_is_sent_as_vllm_names_it(value):
    with FaultServer([ok()]) as server:
        server.model().chat(HI, GenerationParams(repetition_penalty=value))
    assert server.bodies[0]["repetition_penalty"] == value  # 1.0 too: it turns off a server's own default


def test_5xx_is_retried_until_it_succeeds():
    with FaultServer([error(500), error(503), ok()]) as server:
        assert server.model(max_retries=3).chat(HI).text == "Hello"
    assert server.calls == 3


def test_429_honours_retry_after():
    with FaultServer([error(429, {"Retry-After": "0.3"}), ok()]) as server:
        started = time.perf_counter()
        assert server.model().chat(HI).text == "Hello"
    assert time.perf_counter() - started >= 0.3


def test_retries_are_bounded():
    with FaultServer([error(502)]) as server, pytest.raises(BackendHTTPError, match="502") as info:
        server.model(max_retries=2).chat(HI)
    assert info.value.status_code == 502 and server.calls == 3


def test_client_errors_are_not_retried():
    with FaultServer([error(400)]) as server, pytest.raises(BackendHTTPError, match="boom 400"):
        server.model().chat(HI)
    assert server.calls == 1


def test_read_timeout_raises_a_timeout_error():
    with FaultServer([sleep(1.5)]) as server, pytest.raises(BackendTimeoutError):
        server.model(read_timeout=0.3, max_retries=1).chat(HI)
    assert server.calls == 2


def test_a_slow_first_try_then_success():
    with FaultServer([sleep(1.0), ok()]) as server:
        assert server.model(read_timeout=0.3).chat(HI).text == "Hello"


def test_connection_refused():
    model = OpenAIModel(f"http://127.0.0.1:{free_port()}/v1", model="m", max_retries=1, backoff_s=0.01)
    with pytest.raises(BackendConnectionError):
        model.chat(HI)


def test_malformed_completion_json():
    with FaultServer([reply(200, b"{not json")]) as server, pytest.raises(BackendProtocolError):
        server.model().chat(HI)


def test_streaming_deltas_and_usage():
    usage = json.dumps({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 2}})
    body = sse(delta("Hel"), delta("lo", "length"), usage, "[DONE]")
    with FaultServer([stream(body)]) as server:
        chunks = list(server.model().stream(HI))
    assert "".join(c.text for c in chunks) == "Hello"
    assert chunks[-1].finish_reason == "length" and chunks[-1].usage.total_tokens == 4
    assert server.bodies[0]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    "body",
    [
        sse("{broken json"),
        b"garbage line\n\n",
        sse(delta("Hel")),  # no [DONE]: the stream was cut
        sse(json.dumps({"choices": "not a list"}), "[DONE]"),
    ],
)
def test_malformed_streams_raise_protocol_errors(body):
    with FaultServer([stream(body)]) as server, pytest.raises(BackendProtocolError):
        list(server.model(max_retries=0).stream(HI))


def test_an_error_event_mid_stream():
    with FaultServer([stream(sse(delta("a"), json.dumps({"error": {"message": "overloaded"}})))]) as server:
        with pytest.raises(BackendError, match="overloaded"):
            list(server.model().stream(HI))


def test_stream_retries_before_the_first_token():
    with FaultServer([error(503), stream(sse(delta("ok", "stop"), "[DONE]"))]) as server:
        assert "".join(c.text for c in server.model().stream(HI)) == "ok"


def test_bad_configuration_and_local_only_options():
    with pytest.raises(InvalidRequestError, match="base_url"):
        OpenAIModel("localhost:8000", model="m")
    model = OpenAIModel("http://127.0.0.1:9/v1", model="m")
    with pytest.raises(InvalidRequestError, match="logits processors"):
        model.chat(HI, GenerationParams(logits_processors=(lambda i, s: s,)))


def test_against_the_live_prunekit_service(live_service, embedded_model):
    model = OpenAIModel(f"{live_service.url}/v1", model="prunekit-chat", api_key=SERVICE_KEY)
    params = GenerationParams(max_tokens=16)
    question = [{"role": "user", "content": "What is 2+2?"}]
    expected = embedded_model.chat(question, params).text
    result = model.chat(question, params)
    assert result.text == expected and result.usage.completion_tokens > 0
    chunks = list(model.stream(question, params))
    assert "".join(c.text for c in chunks) == expected
    assert chunks[-1].usage.completion_tokens == result.usage.completion_tokens


def test_wrong_key_against_the_live_service(live_service):
    model = OpenAIModel(f"{live_service.url}/v1", model="prunekit-chat", api_key="wrong")
    with pytest.raises(BackendHTTPError) as info:
        model.chat(HI)
    assert info.value.status_code == 401
