"""A bi-encoder (MiniLM sentence embeddings, cosine similarity): the pruner's rerank teacher and the baseline it
must beat.

Provence (Chirkova et al., ICLR 2025, arXiv 2501.16214) distils a cross-encoder's scores into its rerank head; we
have no cross-encoder to start from, so the teacher mixes this bi-encoder's cosine with the gold label (train.py).
The embeddings come from sentence-transformers through `decoding.backends.embeddings.Embedder`, the encoder the rest of
prunekit shares.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from prunekit.context_pruner.model import DEFAULT_BASE, resolve_base
from prunekit.decoding.backends.embeddings import Embedder, load_embedder

__all__ = ["BiEncoder"]


class BiEncoder:
    """Unit-normalised sentence embeddings and cosine similarities.

    >>> enc = BiEncoder()
    >>> int(enc.similarity("capital of France", ["Paris is the capital of France.", "Cats purr."]).argmax())
    0
    """

    def __init__(self, base_model: str = DEFAULT_BASE) -> None:
        # the packaged MiniLM is the process-wide shared encoder; another folder gets its own
        self.encoder: Embedder = load_embedder() if base_model == DEFAULT_BASE else Embedder(resolve_base(base_model))

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(N, H) unit vectors."""
        return self.encoder.encode(list(texts), batch_size=batch_size)

    def similarity(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of `query` with each text: (N,)."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        q = self.embed([query])[0]  # (H,)
        return self.embed(texts) @ q
