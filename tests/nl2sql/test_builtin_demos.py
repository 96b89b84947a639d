"""The demonstrations prunekit ships: valid read-only SQL, varied shapes, retrievable."""

from __future__ import annotations

from prunekit.nl2sql.builtin_demos import BUILTIN_EXAMPLES, builtin_index
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
