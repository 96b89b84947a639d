"""Haystack 2 adapter: a `@component` that prunes and reranks `Document`s (e.g. after a retriever).

Provence (Chirkova et al., ICLR 2025, arXiv 2501.16214). Inputs `query`, `documents`; output `documents`, each
with the pruned `content`, `score` = rerank score, and `meta` extended with it. Needs `haystack-ai`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from haystack import Document, component

from prunekit.context_pruner.integrations.common import (
    METADATA_KEY,
    SCORE_KEY,
    PruneOptions,
    default_pruner,
    prune_documents,
    pruning_metadata,
    title_of,
)

__all__ = ["ProvenceContextPruner"]


@component
class ProvenceContextPruner:
    """Prune documents to the sentences that answer the query; best-scored first by default."""

    def __init__(
        self,
        pruner: Any = None,
        threshold: float = 0.1,
        top_k: int | None = None,
        reorder: bool = True,
        drop_empty: bool = True,
        title_key: str | None = "title",
    ) -> None:
        self.pruner = pruner  # a ContextPruner; None: the shipped weights, loaded in warm_up()
        self.options = PruneOptions(threshold, top_k, reorder, drop_empty, title_key)

    def warm_up(self) -> None:
        if self.pruner is None:
            self.pruner = default_pruner()

    @component.output_types(documents=list[Document])
    def run(
        self, query: str, documents: list[Document], threshold: float | None = None, top_k: int | None = None
    ) -> dict[str, list[Document]]:
        self.warm_up()
        options = dataclasses.replace(
            self.options,
            threshold=self.options.threshold if threshold is None else threshold,
            top_k=self.options.top_k if top_k is None else top_k,
        )
        texts = [d.content or "" for d in documents]
        titles = [title_of(d.meta, options.title_key) for d in documents]
        out = []
        for i, result in prune_documents(self.pruner, query, texts, titles, options):
            meta = {**documents[i].meta, SCORE_KEY: result.rerank_score, METADATA_KEY: pruning_metadata(result)}
            out.append(
                dataclasses.replace(documents[i], content=result.pruned_text, score=result.rerank_score, meta=meta)
            )
        return {"documents": out}
