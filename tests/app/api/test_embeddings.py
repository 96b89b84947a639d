"""`/v1/embeddings` through the official `openai` client and LangChain's `OpenAIEmbeddings`, on a real service."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest

from prunekit.decoding.backends.embeddings import load_embedder
from tests.conftest import SERVICE_KEY, require_module

TEXTS = ["The Eiffel Tower is in Paris.", "A kitten sleeps on the sofa.", "Tax returns are due in April."]


@pytest.fixture()
def client(live_service):
    return openai.OpenAI(base_url=f"{live_service.url}/v1", api_key=SERVICE_KEY, max_retries=0, timeout=60)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _vector(embedding: list[float] | str) -> np.ndarray:
    if isinstance(embedding, str):  # base64 asked for explicitly: the client hands the string over as it came
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return np.array(embedding, dtype=np.float32)


# None: the client's default, which asks for base64 and decodes it itself
@pytest.mark.parametrize("encoding_format", [None, "base64", "float"])
def test_vectors_are_the_encoders_own(client, encoding_format):
    extra = {} if encoding_format is None else {"encoding_format": encoding_format}
    reply = client.embeddings.create(model="prunekit-embed", input=TEXTS, **extra)
    got = np.stack([_vector(d.embedding) for d in sorted(reply.data, key=lambda d: d.index)])
    expected = load_embedder().encode(TEXTS)
    assert got.shape == expected.shape == (3, 384)
    assert _cosines(got, expected).min() > 0.999
    counts = load_embedder().token_counts(TEXTS)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == sum(counts)
    assert reply.model == "prunekit-embed"


def test_a_single_string_and_the_model_list(client):
    reply = client.embeddings.create(model="prunekit-embed", input="hello")
    assert len(reply.data) == 1 and len(reply.data[0].embedding) == 384
    assert "prunekit-embed" in {m.id for m in client.models.list()}


def test_langchain_openai_embeddings_match_the_library(live_service):
    langchain_openai = require_module(
        "langchain_openai", "LangChain's client against the service (the dev extra: pip install -e '.[dev]')"
    )
    embeddings = langchain_openai.OpenAIEmbeddings(
        model="prunekit-embed",
        base_url=f"{live_service.url}/v1",
        api_key=SERVICE_KEY,
        check_embedding_ctx_length=False,  # send text, not OpenAI's token ids (which the service refuses)
        max_retries=0,
    )
    documents = np.array(embeddings.embed_documents(TEXTS), dtype=np.float32)
    query = np.array([embeddings.embed_query(TEXTS[0])], dtype=np.float32)
    expected = load_embedder().encode(TEXTS)
    assert _cosines(documents, expected).min() > 0.999
    assert _cosines(query, expected[:1])[0] > 0.999


@pytest.mark.parametrize(
    ("kwargs", "error", "says"),
    [
        ({"input": [[101, 2023, 102]]}, openai.BadRequestError, "token ids are not supported"),
        ({"input": [1996, 4937]}, openai.BadRequestError, "token ids are not supported"),
        ({"input": ["fine", "  "]}, openai.BadRequestError, "input[1] is empty"),
        ({"input": "word " * 400}, openai.BadRequestError, "embeds at most"),
        ({"input": "hi", "dimensions": 128}, openai.BadRequestError, "384 dimensions only"),
        ({"input": ["x"] * 257}, openai.BadRequestError, "input"),
        ({"input": "hi", "model": "text-embedding-3-small"}, openai.NotFoundError, "does not exist"),
    ],
)
def test_what_cannot_be_embedded_as_asked_is_a_clear_error(client, kwargs, error, says):
    with pytest.raises(error) as caught:
        client.embeddings.create(**{"model": "prunekit-embed", "encoding_format": "float", **kwargs})
    assert says in str(caught.value)


def test_a_wrong_key_is_refused(live_service):
    bad = openai.OpenAI(base_url=f"{live_service.url}/v1", api_key="wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model="prunekit-embed", input="hi")
