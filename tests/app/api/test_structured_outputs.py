"""`response_format` and tool calls through the real service, the real embedded model and the official `openai`
client (and LangChain's ChatOpenAI, the way agent frameworks send them)."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from prunekit.eval.bench.openai_structured import TOOLS
from tests.conftest import SERVICE_KEY

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
TEAM = {
    "type": "object",
    "properties": {"team": {"type": "string"}, "members": {"type": "array", "items": PERSON, "maxItems": 3}},
    "required": ["team", "members"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ADD = next(tool for tool in TOOLS if tool["function"]["name"] == "add")  # the bench's own


@pytest.fixture(scope="module")
def client(live_service):
    return openai.OpenAI(base_url=f"{live_service.url}/v1", api_key=SERVICE_KEY, max_retries=0)


def _schema_format(schema: dict, name: str = "answer") -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def _ask(client, content: str, **kwargs):
    kwargs.setdefault("max_tokens", 96)
    return client.chat.completions.create(
        model="prunekit-chat", messages=[{"role": "user", "content": content}], **kwargs
    )


@pytest.mark.parametrize(("schema", "method"), [(PERSON, "decog"), (TEAM, "llguidance")])
def test_json_schema_answers_validate(client, schema, method):
    reply = _ask(client, "Ann is 31. Describe her as JSON.", response_format=_schema_format(schema))
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)
    report = reply.model_extra["prunekit"]["format"]
    assert report["method"] == method and report["compliance"] is True
    assert (report.get("states", 0) > 0) == (method == "decog")


def test_json_object_gives_an_object(client):
    reply = _ask(client, "Give a JSON object with a greeting.", response_format={"type": "json_object"})
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "object", "not": {"type": "string"}}, "not"),  # a keyword llguidance cannot enforce
        ({"type": "strng"}, "strng"),  # not JSON Schema at all
        ({"type": "string", "format": "no-such-format"}, "no-such-format"),
    ],
)
def test_a_schema_that_cannot_be_enforced_is_a_400_naming_it(client, schema, named):
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(client, "Hi", response_format=_schema_format(schema))
    assert named in caught.value.message


def test_tool_choice_required_gives_valid_calls(client):
    reply = _ask(client, "What is the weather in Paris?", tools=[WEATHER, ADD], tool_choice="required")
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    for call in choice.message.tool_calls:
        tool = {"get_weather": WEATHER, "add": ADD}[call.function.name]
        jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])


def test_a_named_tool_choice_calls_that_function(client):
    named = {"type": "function", "function": {"name": "add"}}
    reply = _ask(client, "Add 2 and 3.", tools=[WEATHER, ADD], tool_choice=named, parallel_tool_calls=False)
    calls = reply.choices[0].message.tool_calls
    assert len(calls) == 1 and calls[0].function.name == "add"


def test_streamed_tool_calls_reassemble_into_the_same_calls(client):
    kwargs = {"tools": [WEATHER, ADD], "tool_choice": "required", "seed": 7}
    whole = _ask(client, "Weather in Rome?", **kwargs).choices[0].message.tool_calls
    parts: dict[int, dict] = {}
    finish = None
    for chunk in _ask(client, "Weather in Rome?", stream=True, **kwargs):
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for delta in chunk.choices[0].delta.tool_calls or []:
            part = parts.setdefault(delta.index, {"name": "", "arguments": ""})
            part["name"] += (delta.function.name or "") if delta.function else ""
            part["arguments"] += (delta.function.arguments or "") if delta.function else ""
    assert finish == "tool_calls"
    assert [(p["name"], json.loads(p["arguments"])) for _, p in sorted(parts.items())] == [
        (c.function.name, json.loads(c.function.arguments)) for c in whole
    ]


def test_tool_results_in_the_history_are_accepted(client):
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24 C"},
    ]
    reply = client.chat.completions.create(
        model="prunekit-chat", messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=24
    )
    assert reply.choices[0].message.content and reply.choices[0].finish_reason in ("stop", "length")


def test_tools_on_a_route_without_free_text_are_a_400(client):
    with pytest.raises(openai.BadRequestError, match="prunekit-chat"):
        client.chat.completions.create(
            model="prunekit-agents", messages=[{"role": "user", "content": "2+2?"}], tools=[ADD], max_tokens=8
        )


def test_format_and_response_format_together_are_a_400(client):
    with pytest.raises(openai.BadRequestError, match="not both"):
        _ask(client, "Hi", response_format={"type": "json_object"}, extra_body={"format": "regex:[a-z]+"})


def test_langchain_with_structured_output(live_service):
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    llm = ChatOpenAI(model="prunekit-chat", base_url=f"{live_service.url}/v1", api_key=SERVICE_KEY, max_tokens=64)
    person = llm.with_structured_output(Person, method="json_schema").invoke("Ann is 31 years old.")
    assert isinstance(person, Person) and isinstance(person.age, int)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # create_react_agent's move to `langchain.agents`
def test_langgraph_react_agent_calls_its_tool_and_answers(live_service):
    from langchain_core.messages import AIMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import create_react_agent

    seen: list[str] = []

    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        seen.append(city)
        return f"Sunny in {city}"

    llm = ChatOpenAI(model="prunekit-chat", base_url=f"{live_service.url}/v1", api_key=SERVICE_KEY, max_tokens=64)
    calling = llm.bind_tools([get_weather], tool_choice="required")
    answering = llm.bind_tools([get_weather], tool_choice="none")

    def model(state, runtime):
        # A 135M model is not trusted to choose the tool by itself: the agent's first turn must call it, the turn
        # after the tool's result must answer (LangGraph's dynamic-model hook; the tool-call round trip is real).
        return answering if isinstance(state["messages"][-1], ToolMessage) else calling

    agent = create_react_agent(model, [get_weather])
    state = agent.invoke({"messages": [("user", "What is the weather in Paris?")]}, {"recursion_limit": 6})
    kinds = [type(m).__name__ for m in state["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"] and seen
    final = state["messages"][-1]
    assert isinstance(final, AIMessage) and final.content and not final.tool_calls


def test_logprobs_come_in_openais_format(client):
    reply = _ask(client, "Say hello.", logprobs=True, top_logprobs=3, max_tokens=8)
    entries = reply.choices[0].logprobs.content
    assert len(entries) == reply.usage.completion_tokens
    assert "".join(e.token for e in entries) == reply.choices[0].message.content
    for entry in entries:
        assert entry.logprob <= 0 and 1 <= len(entry.top_logprobs) <= 3
        assert entry.top_logprobs[0].token == entry.token  # greedy: the token taken is the likeliest
    streamed = [
        e.token
        for chunk in _ask(client, "Say hello.", logprobs=True, max_tokens=8, stream=True)
        if chunk.choices and chunk.choices[0].logprobs
        for e in chunk.choices[0].logprobs.content
    ]
    assert streamed == [e.token for e in entries]
    assert _ask(client, "Say hello.", max_tokens=4).choices[0].logprobs is None


def test_a_call_cut_short_by_max_tokens_streams_as_text(client):
    kwargs = {"tools": [WEATHER], "tool_choice": "required", "max_tokens": 4}
    whole = _ask(client, "Weather in Oslo?", **kwargs).choices[0]
    assert whole.finish_reason == "length" and whole.message.content.startswith("<tool_")
    streamed = "".join(
        c.choices[0].delta.content or "" for c in _ask(client, "Weather in Oslo?", stream=True, **kwargs) if c.choices
    )
    assert streamed == whole.message.content  # nothing held back is lost


def test_a_long_answer_closes_its_json_inside_max_tokens(client):
    """The model would go on for hundreds of tokens; the mask knows the budget and closes the JSON in time."""
    essay = {
        "type": "object",
        "properties": {"essay": {"type": "string"}, "keywords": {"type": "array", "items": {"type": "string"}}},
        "required": ["essay", "keywords"],
        "additionalProperties": False,
    }
    reply = _ask(
        client,
        "Write a very long essay about the history of Rome.",
        response_format=_schema_format(essay),
        max_tokens=48,
    )
    choice = reply.choices[0]
    answer = json.loads(choice.message.content)
    jsonschema.validate(answer, essay)
    assert 30 <= reply.usage.completion_tokens <= 48  # it wrote until the budget called for the end
    assert choice.finish_reason == "stop" and reply.model_extra["prunekit"]["format"]["compliance"] is True
