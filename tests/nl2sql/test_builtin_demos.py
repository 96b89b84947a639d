"""The demonstrations prunekit ships (valid read-only SQL, varied shapes, retrievable), and the choice of index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunekit.decoding.errors import InvalidRequestError
from prunekit.nl2sql.builtin_demos import BUILTIN_EXAMPLES, builtin_index, demonstration_index
from prunekit.nl2sql.retrieval import RetrievalError
from prunekit.nl2sql.sqlast import parse_sql
from tests.nl2sql.fakes import bag_of_words


def test_every_demonstration_is_one_select_that_parses():
    for example in BUILTIN_EXAMPLES:
        tree = parse_sql(example.query)
        assert tree.key in {"select", "union", "except", "intersect"}, example.query


def test_they_cover_the_usual_shapes():
    text = " ".join(e.query.upper() for e in BUILTIN_EXAMPLES)
    for shape in ("COUNT(", "WHERE", "GROUP BY", "HAVING", "ORDER BY", "LIMIT", "JOIN", "EXCEPT", "(SELECT"):
        assert shape in text, shape


def test_the_index_retrieves_the_closest_question():
    index = builtin_index(bag_of_words)
    best = index.retrieve("How many customers are there?", 1)[0]
    assert best.sql == "SELECT count(*) FROM customers"


def test_the_demonstration_index_is_the_builtin_one_without_a_spider_folder():
    index = demonstration_index(None, bag_of_words)
    assert [e.query for e in index.examples] == [e.query for e in BUILTIN_EXAMPLES]


def test_the_demonstration_index_of_a_spider_folder_is_its_training_split(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PRUNEKIT_CACHE_DIR", str(tmp_path / "cache"))
    rows = [{"db_id": "cars", "question": "How many cars are there?", "query": "SELECT count(*) FROM cars"}]
    (tmp_path / "train_spider_slim.json").write_text(json.dumps(rows))
    index = demonstration_index(tmp_path, bag_of_words)
    assert [(e.db_id, e.query) for e in index.examples] == [("cars", "SELECT count(*) FROM cars")]


def test_a_spider_folder_without_its_training_file_is_refused_by_name(tmp_path: Path) -> None:
    def no_encoder(texts: list[str]):
        raise AssertionError("the folder is refused before anything is embedded")

    with pytest.raises(InvalidRequestError, match=r"train_spider_slim\.json") as refused:
        demonstration_index(tmp_path, no_encoder)
    assert isinstance(refused.value, RetrievalError) and str(tmp_path) in str(refused.value)
