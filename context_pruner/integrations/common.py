"""What the framework adapters share: prune a list of document texts for one query and say what to return.

Provence (Chirkova et al., ICLR 2025, arXiv 2501.16214): prune and rerank in one pass; the adapters only
translate documents in and out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prunekit.context_pruner.errors import InvalidQuestionError
from prunekit.context_pruner.pruner import ContextPruner, PrunedContext, default_pruner

__all__ = ["METADATA_KEY", "SCORE_KEY", "PruneOptions", "default_pruner", "prune_documents"]

SCORE_KEY = "rerank_score"  # metadata key of the rerank score
METADATA_KEY = "context_pruning"  # metadata key of {kept_sentences, tokens_before, tokens_after, compression}


@dataclass(frozen=True)
class PruneOptions:
    threshold: float = 0.1
    top_k: int | None = None  # keep only the top_k best-scored documents
    reorder: bool = True  # return documents by rerank score, best first
    drop_empty: bool = True  # drop documents with no kept sentence
    title_key: str | None = "title"  # metadata key of a title the model reads before the text (as in training)
    batch_size: int = 32


def prune_documents(
    pruner: ContextPruner, query: str, texts: Sequence[str], titles: Sequence[str | None], options: PruneOptions
) -> list[tuple[int, PrunedContext]]:
    """(original index, result) pairs to return, in the order to return them."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidQuestionError("the query is empty: pruning needs the question the documents should answer")
    if not texts:
        return []
    results = pruner.prune(
        query,
        list(texts),
        titles=list(titles) if any(t is not None for t in titles) else None,
        threshold=options.threshold,
        reorder=options.reorder,
        top_k=options.top_k,
        batch_size=options.batch_size,
    )
    return [(r.index, r) for r in results if not (options.drop_empty and not r.kept_sentences)]


def pruning_metadata(result: PrunedContext) -> dict[str, Any]:
    return {
        "kept_sentences": list(result.kept_sentences),
        "tokens_before": result.tokens_before,
        "tokens_after": result.tokens_after,
        "compression": result.compression,
        "rank": result.rank,
    }


def title_of(meta: dict[str, Any] | None, key: str | None) -> str | None:
    value = (meta or {}).get(key) if key else None
    return value if isinstance(value, str) and value.strip() else None
