"""A bi-encoder (mean-pooled MiniLM, cosine similarity): the pruner's rerank teacher and the baseline it must beat.

Provence (Chirkova et al., ICLR 2025, arXiv 2501.16214) distils a cross-encoder's scores into its rerank head; we
have no cross-encoder to start from, so the teacher mixes this bi-encoder's cosine with the gold label (train.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from context_pruner.model import DEFAULT_BASE, resolve_base

__all__ = ["BiEncoder"]

logger = logging.getLogger(__name__)


class BiEncoder:
    """Sentence embeddings as sentence-transformers computes them for all-MiniLM-L6-v2 (mean pooling, L2 norm).

    >>> enc = BiEncoder()
    >>> int(enc.similarity("capital of France", ["Paris is the capital of France.", "Cats purr."]).argmax())
    0
    """

    def __init__(self, base_model: str = DEFAULT_BASE, max_length: int = 256) -> None:
        path = resolve_base(base_model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.max_length = max_length

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(N, H) unit vectors, computed in batches sorted by length."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            enc = self.tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            h = self.model(**enc).last_hidden_state  # (B, T, H)
            mask = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
            mean = (h * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, H)
            out[idx] = torch.nn.functional.normalize(mean, dim=-1).numpy()
        return out

    def similarity(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of `query` with each text: (N,)."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        q = self.embed([query])[0]  # (H,)
        return self.embed(texts) @ q
