"""The OpenAI-compatible service under uvicorn on 127.0.0.1, driven by the official `openai` client."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import SERVICE_KEY

QUESTION = [{"role": "user", "content": "What is 2+2?"}]
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def guarded(**kwargs):
    """The params the service runs a free-text chat request with: the loop guard at its default."""
    from prunekit.app.settings import Settings
    from prunekit.decoding import GenerationParams

    return GenerationParams(repetition_penalty=Settings.model_fields["repetition_penalty"].default, **kwargs)


@pytest.fixture()
def client(live_service) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_service.url}/v1", api_key=SERVICE_KEY, max_retries=0, timeout=120)


@pytest.fixture()
def http(live_service) -> httpx.Client:
    with httpx.Client(base_url=live_service.url, headers={"Authorization": f"Bearer {SERVICE_KEY}"}, timeout=120) as c:
        yield c


def test_non_stream_answer(client, embedded_model):
    reply = client.chat.completions.create(model="prunekit-chat", messages=QUESTION, max_tokens=16)
    assert reply.choices[0].message.content == embedded_model.chat(QUESTION, guarded(max_tokens=16)).text
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0


def test_stream_answer(client):
    full = client.chat.completions.create(model="prunekit-chat", messages=QUESTION, max_tokens=16)
    chunks = list(
        client.chat.completions.create(
            model="prunekit-chat", messages=QUESTION, max_tokens=16, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_raw_stream_ends_with_done(http):
    body = {"model": "prunekit-chat", "messages": QUESTION, "max_tokens": 4, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        data = [line for line in response.iter_lines() if line.startswith("data:")]
    assert data[-1] == "data: [DONE]"


def test_models_and_health(client, live_service):
    assert [m.id for m in client.models.list()] == [
        "prunekit-chat",
        "prunekit-rag",
        "prunekit-sql",
        "prunekit-agents",
        "prunekit-auto",
        "prunekit-embed",
        "prunekit-rerank",
    ]
    assert httpx.get(f"{live_service.url}/health").json()["status"] == "ok"  # no key needed


def test_wrong_or_missing_api_key_gets_401(live_service):
    bad = openai.OpenAI(base_url=f"{live_service.url}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="prunekit-chat", messages=QUESTION)
    response = httpx.post(
        f"{live_service.url}/v1/chat/completions", json={"model": "prunekit-chat", "messages": QUESTION}
    )
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"model": "prunekit-chat", "messages": []}, 400, "messages"),
        ({"model": "prunekit-chat"}, 400, "messages"),
        ({"model": "prunekit-chat", "messages": "hi"}, 400, "messages"),
        ({"model": "prunekit-chat", "messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
        ({"model": "prunekit-chat", "messages": [{"role": "user", "content": 5}]}, 400, "content"),
        ({"model": "prunekit-chat", "messages": QUESTION, "max_tokens": "many"}, 400, "max_tokens"),
        ({"model": "prunekit-chat", "messages": QUESTION, "max_tokens": 0}, 400, "max_tokens"),
        ({"model": "prunekit-chat", "messages": QUESTION, "max_tokens": 100000}, 400, "max_tokens"),
        ({"model": "prunekit-chat", "messages": QUESTION, "temperature": 3}, 400, "temperature"),
        ({"model": "prunekit-chat", "messages": QUESTION, "n": 2}, 400, "n"),
        ({"model": "prunekit-chat", "messages": QUESTION, "frequency_penalty": 2.5}, 400, "frequency_penalty"),
        ({"model": "prunekit-chat", "messages": QUESTION, "presence_penalty": -9}, 400, "presence_penalty"),
        ({"model": "prunekit-chat", "messages": QUESTION, "repetition_penalty": 0}, 400, "repetition_penalty"),
        ({"model": "prunekit-chat", "messages": QUESTION, "repetition_penalty": 2.5}, 400, "repetition_penalty"),
        ({"model": "prunekit-chat", "messages": QUESTION, "stop": [""]}, 400, "stop"),
        ({"model": "gpt-9", "messages": QUESTION}, 404, "does not exist"),
    ],
)
def test_bad_requests_get_a_json_4xx(http, body, status, fragment):
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    assert fragment in response.json()["error"]["message"]


def test_invalid_json_body(http):
    response = http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "request body is not valid JSON"


def test_body_over_the_limit_gets_413(http):
    huge = {"model": "prunekit-chat", "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    response = http.post("/v1/chat/completions", json=huge)
    assert response.status_code == 413 and "larger than" in response.json()["error"]["message"]


def test_chunked_body_over_the_limit_gets_413(http):
    def chunks():
        yield b'{"model": "prunekit-chat", "messages": [{"role": "user", "content": "'
        for _ in range(12):
            yield b"y" * 100_000
        yield b'"}]}'

    response = http.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize("model", ["prunekit-chat", "prunekit-auto"])
def test_prompt_over_the_context_is_a_400_even_when_streaming(http, embedded_model, model):
    # prunekit-auto sends a progress event (the route it chose) before the model refuses: the stream must
    # still not have started
    long = "word " * (embedded_model.context_length + 10)
    for stream in (False, True):
        body = {"model": model, "messages": [{"role": "user", "content": long}], "stream": stream}
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 400, stream
        assert "context" in response.json()["error"]["message"]


def test_text_parts_and_developer_role_are_accepted(client):
    reply = client.chat.completions.create(
        model="prunekit-chat",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
        ],
        max_tokens=8,
    )
    assert reply.choices[0].message.content


def test_format_extension_field(client, http):
    reply = client.chat.completions.create(
        model="prunekit-chat",
        messages=[{"role": "user", "content": "Is the sky blue? Answer yes or no."}],
        max_tokens=8,
        extra_body={"format": "choice:yes|no", "format_method": "hard_mask"},
    )
    assert reply.choices[0].message.content in ("yes", "no")
    bad = {"model": "prunekit-chat", "messages": QUESTION, "format": "regex:(", "format_method": "hard_mask"}
    response = http.post("/v1/chat/completions", json=bad)
    assert response.status_code == 400 and "regex" in response.json()["error"]["message"]


def test_penalties_reach_the_model(client, embedded_model):
    repeat = [{"role": "user", "content": "Repeat the word yes ten times."}]
    reply = client.chat.completions.create(
        model="prunekit-chat", messages=repeat, max_tokens=24, frequency_penalty=2.0, presence_penalty=0.5
    )
    expected = embedded_model.chat(repeat, guarded(max_tokens=24, frequency_penalty=2.0, presence_penalty=0.5)).text
    assert reply.choices[0].message.content == expected
    assert expected != embedded_model.chat(repeat, guarded(max_tokens=24)).text


def test_the_loop_guard_is_on_by_default_and_a_request_can_turn_it_off(client, embedded_model):
    from prunekit.decoding import GenerationParams

    def ask(**extra):
        reply = client.chat.completions.create(model="prunekit-chat", messages=FRANCE, max_tokens=48, **extra)
        return reply.choices[0].message.content

    assert ask() == embedded_model.chat(FRANCE, guarded(max_tokens=48)).text
    plain = embedded_model.chat(FRANCE, GenerationParams(max_tokens=48)).text  # greedy alone loops here
    assert ask(extra_body={"repetition_penalty": 1.0}) == plain != ask()
    strong = GenerationParams(max_tokens=48, repetition_penalty=1.5)
    assert ask(extra_body={"repetition_penalty": 1.5}) == embedded_model.chat(FRANCE, strong).text
