"""LangChain adapter: a `BaseDocumentCompressor` that prunes and reranks retrieved documents.

Provence (Chirkova et al., ICLR 2025, arXiv 2501.16214). Use it in a `ContextualCompressionRetriever`, or call
`compress_documents(documents, query)` directly. Needs `langchain-core`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import Document
from langchain_core.documents.compressor import BaseDocumentCompressor
from pydantic import ConfigDict, Field

from prunekit.context_pruner.integrations.common import (
    METADATA_KEY,
    SCORE_KEY,
    PruneOptions,
    default_pruner,
    prune_documents,
    pruning_metadata,
    title_of,
)

__all__ = ["ProvenceDocumentCompressor"]


class ProvenceDocumentCompressor(BaseDocumentCompressor):
    """Keeps only the sentences of each document that help answer the query; metadata gets `rerank_score`.

    >>> compressor = ProvenceDocumentCompressor(threshold=0.5)
    >>> docs = [Document(page_content="Paris is the capital of France.", metadata={"source": "a.txt"}),
    ...         Document(page_content="Bananas are rich in potassium.", metadata={"source": "b.txt"})]
    >>> kept = compressor.compress_documents(docs, "What is the capital of France?")  # b.txt keeps nothing: dropped
    >>> [(d.metadata["source"], d.page_content) for d in kept]
    [('a.txt', 'Paris is the capital of France.')]
    >>> 0.0 <= kept[0].metadata["rerank_score"] <= 1.0
    True
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pruner: Any = Field(default=None, exclude=True)  # a ContextPruner; None: the shipped weights
    threshold: float = 0.1
    top_k: int | None = None
    reorder: bool = True
    drop_empty: bool = True
    title_key: str | None = "title"

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        options = PruneOptions(self.threshold, self.top_k, self.reorder, self.drop_empty, self.title_key)
        docs = list(documents)
        titles = [title_of(d.metadata, self.title_key) for d in docs]
        chosen = prune_documents(
            self.pruner or default_pruner(), query, [d.page_content for d in docs], titles, options
        )
        out = []
        for i, result in chosen:
            meta = {**docs[i].metadata, SCORE_KEY: result.rerank_score, METADATA_KEY: pruning_metadata(result)}
            out.append(Document(page_content=result.pruned_text, metadata=meta, id=docs[i].id))
        return out
