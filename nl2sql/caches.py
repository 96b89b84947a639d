"""What the agent builds once and reuses across questions: database contexts, and the vectors of schema names.

Every question on a database needs its schema (with example values) and its value index; schema linking
embeds the same table and column names each time. Both are kept here, safely for concurrent questions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prunekit.nl2sql.errors import DatabaseNotFoundError
from prunekit.nl2sql.retrieval import Embedder
from prunekit.nl2sql.schema import Schema, ValueIndex, introspect_sqlite

__all__ = ["DatabaseCache", "DatabaseContext", "MemoEmbedder", "resolve_database"]


def resolve_database(path: str | Path) -> Path:
    """The database file's absolute path; `DatabaseNotFoundError` when there is no such file."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise DatabaseNotFoundError(f"no SQLite database at {p}")
    return p


@dataclass
class DatabaseContext:
    """A database's schema (with example values) and value index, built once and reused."""

    path: Path
    schema: Schema
    values: ValueIndex

    @classmethod
    def open(cls, path: str | Path, n_examples: int = 2) -> DatabaseContext:
        p = resolve_database(path)
        schema = introspect_sqlite(p, n_examples=n_examples)
        return cls(p, schema, ValueIndex.from_sqlite(p, schema))


class DatabaseCache:
    """Contexts by (file, modification time): a database edited on disk is read again, once."""

    def __init__(self, n_examples: int) -> None:
        self.n_examples = n_examples
        self._items: dict[tuple[Path, float], DatabaseContext] = {}
        self._lock = threading.Lock()
        self._building: dict[tuple[Path, float], threading.Lock] = {}

    def get(self, path: str | Path) -> DatabaseContext:
        p = resolve_database(path)
        key = (p, p.stat().st_mtime)
        with self._lock:
            if key in self._items:
                return self._items[key]
            gate = self._building.setdefault(key, threading.Lock())
        with gate:  # one thread builds a database's context; the others wait for it
            with self._lock:
                if key in self._items:
                    return self._items[key]
            ctx = DatabaseContext.open(p, self.n_examples)
            with self._lock:
                # the database changed on disk: its older contexts (and their build gates) will never be asked for
                for stale in [k for k in self._items if k[0] == p]:
                    del self._items[stale]
                    self._building.pop(stale, None)
                self._items[key] = ctx
            return ctx


class MemoEmbedder:
    """Remembers the vectors of texts it has embedded: schema linking embeds the same table and column
    names for every question on a database, so only the question is new."""

    def __init__(self, embed: Embedder, max_items: int = 100_000) -> None:
        self.embed = embed
        self.max_items = max_items
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            known = {t: self._vectors[t] for t in texts if t in self._vectors}
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            fresh = np.asarray(self.embed(missing), dtype=np.float32)  # (M, D)
            known.update(zip(missing, fresh, strict=True))
            with self._lock:
                if len(self._vectors) + len(missing) > self.max_items:
                    self._vectors.clear()
                self._vectors.update(zip(missing, fresh, strict=True))
        return np.stack([known[t] for t in texts])  # (N, D)
