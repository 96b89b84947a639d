"""`response_format` and tools on a remote backend: the fields go through to the server (llama-cpp-python's own,
a real upstream), its enforcement is reported as such, and what it refuses is a 400 that says so."""

from __future__ import annotations

import json

import openai
import pytest

from prunekit.app.api.service import create_app
from prunekit.app.settings import Settings
from prunekit.decoding import OpenAIModel
from tests.conftest import LiveServer, require_part

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from prunekit.app.proxy.llama_server import LLAMA_SERVER_MODEL, llama_server, llama_server_available

    require_part(llama_server_available(), "llama-cpp-python's server: pip install 'llama-cpp-python[server]'")
    with llama_server(n_ctx=2048, interrupt_requests=False) as base_url:
        model = OpenAIModel(base_url, model=LLAMA_SERVER_MODEL)
        settings = Settings(data_dir=tmp_path_factory.mktemp("upstream"), rate_limit_per_minute=0)
        with LiveServer(create_app(settings, model=model)) as server:
            yield openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        model.close()


def _ask(client, content: str, **kwargs):
    return client.chat.completions.create(
        model="prunekit-chat", messages=[{"role": "user", "content": content}], max_tokens=64, **kwargs
    )


@pytest.mark.slow
def test_json_object_is_the_servers_to_enforce(client):
    reply = _ask(client, "Reply with a JSON object: Ann's name and age (31).", response_format={"type": "json_object"})
    content = reply.choices[0].message.content
    assert content.lstrip().startswith("{")  # the server's grammar ran
    report = reply.model_extra["prunekit"]["format"]
    assert report["method"] == "upstream"
    assert report["compliance"] is _parses(content)  # checked here all the same: the server's word is not taken


def _parses(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


@pytest.mark.slow
def test_the_servers_tool_calls_come_back_as_openais(client):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    reply = _ask(client, "What is the weather in Oslo?", tools=[WEATHER], tool_choice=choice)
    (call,) = reply.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and "city" in json.loads(call.function.arguments)
    assert reply.choices[0].finish_reason == "tool_calls"
    streamed = _ask(client, "What is the weather in Oslo?", tools=[WEATHER], tool_choice=choice, stream=True)
    pieces = [d for c in streamed if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert pieces and pieces[0].function.name == "get_weather"


@pytest.mark.slow
def test_a_field_the_server_refuses_is_an_error_in_its_words(client):
    """llama-cpp-python's server knows no `json_schema` (and answers such a request with a 500): the client gets an
    error naming the field, never text the schema did not shape."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    with pytest.raises((openai.BadRequestError, openai.InternalServerError), match="response_format") as refused:
        _ask(client, "Hi", response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})
    assert refused.value.status_code in (400, 502)
