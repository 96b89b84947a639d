"""LangChain's ChatOpenAI pointed at the service: invoke and stream, on the real embedded model."""

from __future__ import annotations

import pytest

from tests.conftest import SERVICE_KEY, require_module

langchain_openai = require_module(
    "langchain_openai", "LangChain's client against the service (the dev extra: pip install -e '.[dev]')"
)


@pytest.fixture()
def llm(live_service):
    return langchain_openai.ChatOpenAI(
        model="prunekit-chat",
        base_url=f"{live_service.url}/v1",
        api_key=SERVICE_KEY,
        max_tokens=16,
        temperature=0,
        max_retries=0,
        timeout=120,
    )


def test_invoke_and_stream_agree(llm):
    reply = llm.invoke("What is the capital of France?")
    assert reply.content
    assert (
        reply.usage_metadata["total_tokens"]
        == reply.usage_metadata["input_tokens"] + reply.usage_metadata["output_tokens"]
    )
    chunks = list(llm.stream("What is the capital of France?"))
    assert len(chunks) > 1
    assert "".join(c.content for c in chunks) == reply.content


def test_a_wrong_key_is_an_authentication_error(live_service):
    import openai

    bad = langchain_openai.ChatOpenAI(
        model="prunekit-chat", base_url=f"{live_service.url}/v1", api_key="wrong", max_retries=0, timeout=30
    )
    with pytest.raises(openai.AuthenticationError):
        bad.invoke("hi")
