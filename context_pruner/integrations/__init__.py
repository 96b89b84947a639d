"""Context pruning in the RAG frameworks people already use (optional extras, imported on demand).

- `context_pruner.integrations.langchain.ProvenceDocumentCompressor` (langchain-core)
- `context_pruner.integrations.llamaindex.ProvenceNodePostprocessor` (llama-index-core)
- `context_pruner.integrations.haystack.ProvenceContextPruner` (haystack-ai, a Haystack 2 `@component`)

Each keeps the documents' metadata, attaches the rerank score, and drops documents with nothing left.
"""

from prunekit.context_pruner.integrations.common import PruneOptions, prune_documents

__all__ = ["PruneOptions", "prune_documents"]
