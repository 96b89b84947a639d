"""OpenAI's `/v1/embeddings` over the embedded sentence encoder (all-MiniLM-L6-v2, `decoding.backends.embeddings`),
the same vectors RAG retrieval, schema linking and demonstration retrieval use.

The reply is OpenAI's: `data[i].embedding` (unit-normalised, 384 floats, or their little-endian float32 bytes in
base64 for `encoding_format="base64"`, which the official client asks for by default), `usage` counted in the
encoder's tokens. Refused with a 400 that says why, rather than answered with something else:
- token ids as input (they come from OpenAI's tokenizer, not this encoder's; LangChain sends them unless
  `OpenAIEmbeddings(check_embedding_ctx_length=False)`);
- an input longer than the encoder embeds whole (it would be cut without a word) or an empty one;
- `dimensions` other than the encoder's (MiniLM's vectors are not Matryoshka-trained: a prefix is not an embedding).

>>> body = embeddings_body(np.array([[0.6, 0.8]], dtype=np.float32), [3], "float")
>>> body["data"][0]["embedding"], body["usage"]
([0.6000000238418579, 0.800000011920929], {'prompt_tokens': 3, 'total_tokens': 3})
>>> embeddings_body(np.array([[1.0, 0.0]], dtype=np.float32), [2], "base64")["data"][0]["embedding"]
'AACAPwAAAAA='
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from prunekit.app.api.errors import ApiError
from prunekit.app.api.schemas import EmbeddingsRequest
from prunekit.decoding.backends.embeddings import Embedder

__all__ = ["EMBEDDING_MODEL", "embed_request", "embeddings_body", "request_texts"]

EMBEDDING_MODEL = "prunekit-embed"


def request_texts(body: EmbeddingsRequest) -> list[str]:
    """The texts to embed, or an `ApiError` for what the encoder cannot embed as asked (module doc)."""
    if body.model != EMBEDDING_MODEL:
        raise ApiError(
            404,
            f"model {body.model!r} does not exist; the embedding model is {EMBEDDING_MODEL!r}",
            code="model_not_found",
        )
    texts = [body.input] if isinstance(body.input, str) else body.input
    if any(not isinstance(text, str) for text in texts):
        raise ApiError(
            400,
            "input: token ids are not supported, send text (prunekit's encoder has its own tokenizer; LangChain: "
            "OpenAIEmbeddings(check_embedding_ctx_length=False))",
            code="unsupported_parameter",
        )
    empty = [i for i, text in enumerate(texts) if not text.strip()]
    if empty:
        raise ApiError(400, f"input[{empty[0]}] is empty: there is nothing to embed", code="invalid_value")
    return texts


def embed_request(body: EmbeddingsRequest, texts: list[str], embedder: Embedder) -> dict[str, Any]:
    """Embed `texts` (checked by `request_texts`) and build the reply; blocking (run it in a worker thread)."""
    if body.dimensions is not None and body.dimensions != embedder.dim:
        raise ApiError(
            400, f"dimensions: {EMBEDDING_MODEL} embeds in {embedder.dim} dimensions only", code="invalid_value"
        )
    counts = embedder.token_counts(texts)
    too_long = [i for i, n in enumerate(counts) if n > embedder.max_tokens]
    if too_long:
        i = too_long[0]
        raise ApiError(
            400,
            f"input[{i}] is {counts[i]} tokens; {EMBEDDING_MODEL} embeds at most {embedder.max_tokens} "
            "(split the text into smaller chunks)",
            code="context_length_exceeded",
        )
    return embeddings_body(embedder.encode(texts), counts, body.encoding_format)


def embeddings_body(vectors: np.ndarray, token_counts: list[int], encoding_format: str) -> dict[str, Any]:
    """OpenAI's embeddings reply for `vectors` (N, D) float32."""

    def encoded(vector: np.ndarray) -> list[float] | str:
        if encoding_format == "base64":  # what the official client decodes with numpy: float32, little-endian
            return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
        return vector.astype(np.float32).tolist()

    tokens = sum(token_counts)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encoded(v)} for i, v in enumerate(vectors)],
        "model": EMBEDDING_MODEL,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
