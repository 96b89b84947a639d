"""LlamaIndex adapter: a `BaseNodePostprocessor` that prunes node texts and rescores nodes.

Provence (Chirkova et al., ICLR 2025, arXiv 2501.16214). Pass it in `node_postprocessors=[...]` of a query
engine. The node's score becomes the rerank score (also in its metadata). Needs `llama-index-core`.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from pydantic import Field

from prunekit.context_pruner.errors import InvalidQuestionError
from prunekit.context_pruner.integrations.common import (
    METADATA_KEY,
    SCORE_KEY,
    PruneOptions,
    default_pruner,
    prune_documents,
    pruning_metadata,
    title_of,
)

__all__ = ["ProvenceNodePostprocessor"]


class ProvenceNodePostprocessor(BaseNodePostprocessor):
    """Prune each node to the sentences that answer the query; nodes come back best-scored first."""

    pruner: Any = Field(default=None, exclude=True)  # a ContextPruner; None: the shipped weights
    threshold: float = 0.1
    top_k: int | None = None
    reorder: bool = True
    drop_empty: bool = True
    title_key: str | None = "title"

    @classmethod
    def class_name(cls) -> str:
        return "ProvenceNodePostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise InvalidQuestionError("ProvenceNodePostprocessor needs the query: pass query_str or query_bundle")
        options = PruneOptions(self.threshold, self.top_k, self.reorder, self.drop_empty, self.title_key)
        texts = [n.node.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        titles = [title_of(n.node.metadata, self.title_key) for n in nodes]
        chosen = prune_documents(self.pruner or default_pruner(), query_bundle.query_str, texts, titles, options)
        out = []
        for i, result in chosen:
            node = nodes[i].node.model_copy(deep=True)  # never mutate the caller's (possibly stored) node
            node.set_content(result.pruned_text)
            node.metadata[SCORE_KEY] = result.rerank_score
            node.metadata[METADATA_KEY] = pruning_metadata(result)
            for key in (SCORE_KEY, METADATA_KEY):  # bookkeeping, not text for the LLM or the embedder
                for excluded in (node.excluded_llm_metadata_keys, node.excluded_embed_metadata_keys):
                    if key not in excluded:
                        excluded.append(key)
            out.append(NodeWithScore(node=node, score=result.rerank_score))
        return out
