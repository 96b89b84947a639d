"""`/v1/rerank` in the common rerank format (Cohere's, as Jina and text-embeddings-inference serve it), scored by
the context pruner's rerank head: and, in the same encoder pass, each document's pruned text.

Request: `model` (`prunekit-rerank`), `query`, `documents` (strings, or objects with a `text`), `top_n`,
`return_documents`, and prunekit's `threshold` (the pruning threshold, 0.1 conservative .. 0.5 aggressive).
Each result: `index` (into `documents`), `relevance_score` (the rerank head's logit through a sigmoid: in (0, 1),
ordered as the logits), `document` (`{"text": ...}` when asked for), and what no other rerank server returns: the
`pruned_text` (the sentences that help answer the query, cut verbatim), their `kept_sentence_spans` ([start, end)
character offsets into the document) and the `compression` (share of the document's tokens removed).
`usage.total_tokens` counts the documents in the pruner's own tokens.

>>> from prunekit.context_pruner import default_pruner
>>> docs = ["The Eiffel Tower is in Paris. It was completed in 1889.", "Bananas are rich in potassium."]
>>> body = rerank_body(default_pruner().prune("When was the Eiffel Tower completed?", docs), docs, 1, False)
>>> [r["index"] for r in body["results"]], body["results"][0]["pruned_text"]
([0], 'The Eiffel Tower is in Paris. It was completed in 1889.')
"""

from __future__ import annotations

import math
from typing import Any

from prunekit.app.api.errors import ApiError
from prunekit.app.api.schemas import RerankRequest
from prunekit.context_pruner.pruner import PrunedContext

__all__ = ["RERANK_MODEL", "document_texts", "rerank_body"]

RERANK_MODEL = "prunekit-rerank"


def document_texts(body: RerankRequest) -> list[str]:
    """The documents' texts, or an `ApiError` for a request that names another model."""
    if body.model != RERANK_MODEL:
        raise ApiError(
            404, f"model {body.model!r} does not exist; the rerank model is {RERANK_MODEL!r}", code="model_not_found"
        )
    return [d if isinstance(d, str) else d.text for d in body.documents]


def rerank_body(results: list[PrunedContext], documents: list[str], top_n: int | None, return_documents: bool) -> dict:
    """The rerank reply: `results` (the pruner's, one per document, in input order) best first, cut to `top_n`."""
    ranked = sorted(results, key=lambda r: -r.rerank_score)[:top_n]

    def entry(r: PrunedContext) -> dict[str, Any]:
        out: dict[str, Any] = {"index": r.index, "relevance_score": 1.0 / (1.0 + math.exp(-r.rerank_score))}
        if return_documents:
            out["document"] = {"text": documents[r.index]}
        out.update(
            pruned_text=r.pruned_text,
            kept_sentence_spans=[list(span) for span in r.kept_spans],
            compression=r.compression,
        )
        return out

    tokens = sum(r.tokens_before for r in results)
    return {"model": RERANK_MODEL, "results": [entry(r) for r in ranked], "usage": {"total_tokens": tokens}}
