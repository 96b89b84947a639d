"""The vector store: Qdrant through qdrant-client, embedded on disk by default, a Qdrant server at scale.

Why Qdrant: the same client and collections work in-process (local mode, a folder in the data dir,
nothing to run) and against a Qdrant server or cluster shared by several service workers
(`PRUNEKIT_QDRANT_URL`), so scaling out changes a setting, not code.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunekit.app.rag.documents import Chunk, public_source
from prunekit.decoding.backends.embeddings import Embedder
from prunekit.decoding.errors import InvalidRequestError

__all__ = ["Hit", "VectorStore"]


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float  # cosine similarity


class VectorStore:
    def __init__(
        self, embedder: Embedder, *, path: Path | None = None, url: str | None = None, api_key: str | None = None
    ):
        from qdrant_client import QdrantClient

        if (path is None) == (url is None):
            raise InvalidRequestError("give the vector store either a local path or a server URL")
        self.embedder = embedder
        self.client = QdrantClient(url=url, api_key=api_key) if url else QdrantClient(path=str(path))
        self._lock = threading.Lock()  # local mode is not safe for concurrent writers

    def collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def add(self, collection: str, chunks: Sequence[Chunk], batch_size: int = 64) -> int:
        from qdrant_client import models

        _check_name(collection)
        with self._lock:
            if not self.client.collection_exists(collection):
                self.client.create_collection(
                    collection,
                    vectors_config=models.VectorParams(size=self.embedder.dim, distance=models.Distance.COSINE),
                )
            for start in range(0, len(chunks), batch_size):
                batch = list(chunks[start : start + batch_size])
                vectors = self.embedder.encode([c.text for c in batch])  # (B, D)
                points = [
                    models.PointStruct(
                        # the same chunk of the same source maps to the same id: re-ingesting updates, never duplicates
                        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{c.source}#{c.index}")),
                        vector=v.tolist(),
                        payload={"text": c.text, "source": c.source, "index": c.index, "title": c.title},
                    )
                    for c, v in zip(batch, vectors, strict=True)
                ]
                self.client.upsert(collection, points=points)
        return len(chunks)

    def search(self, collection: str, query: str, k: int = 5) -> list[Hit]:
        _check_name(collection)
        if not self.client.collection_exists(collection):
            raise InvalidRequestError(f"collection {collection!r} does not exist; ingest documents into it first")
        vector = self.embedder.encode([query])[0]
        with self._lock:
            found = self.client.query_points(collection, query=vector.tolist(), limit=k, with_payload=True).points
        return [Hit(_chunk(p.payload), float(p.score)) for p in found]

    def close(self) -> None:
        self.client.close()


def _chunk(payload: Any) -> Chunk:
    source = public_source(payload["source"])
    return Chunk(text=payload["text"], source=source, index=int(payload["index"]), title=payload["title"])


def _check_name(collection: str) -> None:
    if not collection or len(collection) > 64 or not collection.replace("-", "").replace("_", "").isalnum():
        raise InvalidRequestError(f"collection names are 1-64 letters, digits, '-' or '_'; got {collection!r}")
