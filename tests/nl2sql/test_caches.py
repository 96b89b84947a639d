"""What the agent reuses: database contexts by file and modification time, and embedded schema names."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from prunekit.nl2sql.caches import DatabaseCache, MemoEmbedder, resolve_database
from prunekit.nl2sql.errors import DatabaseNotFoundError
from tests.nl2sql.fakes import CountingEmbedder, bag_of_words
from tests.nl2sql.toydb import make_toy_db


def test_the_database_cache_reads_an_edited_file_again_and_forgets_the_old_one(tmp_path: Path) -> None:
    db = make_toy_db(tmp_path / "toy.sqlite")
    cache = DatabaseCache(n_examples=0)
    first = cache.get(db)
    assert cache.get(db) is first
    stat = db.stat()
    os.utime(db, (stat.st_atime, stat.st_mtime + 5))  # as if edited
    second = cache.get(db)
    assert second is not first and list(cache._items.values()) == [second]


def test_a_missing_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatabaseNotFoundError, match="no SQLite database at"):
        resolve_database(tmp_path / "missing.sqlite")
    with pytest.raises(DatabaseNotFoundError):
        DatabaseCache(n_examples=0).get(tmp_path)  # a folder is not a database


def test_the_memo_embedder_embeds_each_text_once() -> None:
    counting = CountingEmbedder()
    memo = MemoEmbedder(counting)
    first = memo(["singer", "name", "singer"])
    assert counting.n_texts == 2 and np.allclose(first, bag_of_words(["singer", "name", "singer"]))
    memo(["name", "age"])
    assert counting.n_texts == 3  # only "age" was new
