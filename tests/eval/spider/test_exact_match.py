"""Exact-set match through sqlglot normalisation."""

from __future__ import annotations

import json

import pytest

from prunekit.eval.spider.data import load_tables
from prunekit.eval.spider.exact_match import components, exact_match, fk_canonical_map
from prunekit.nl2sql.schema import introspect_sqlite
from tests.conftest import require_data
from tests.nl2sql.toydb import make_toy_db


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory):
    return introspect_sqlite(make_toy_db(tmp_path_factory.mktemp("em") / "toy.sqlite"), n_examples=0)


JOIN = "FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id"

PAIRS = [
    # values are ignored, aliases and case do not matter
    ("SELECT T1.name FROM singer AS T1 WHERE T1.age > 20", "select name from singer where age > 30", True),
    ('SELECT name FROM singer WHERE country = "France"', "SELECT name FROM singer WHERE country = 'Spain'", True),
    ("SELECT name FROM singer ORDER BY age DESC LIMIT 1", "SELECT name FROM singer ORDER BY age DESC LIMIT 3", True),
    ("SELECT DISTINCT name FROM singer", "SELECT name FROM singer", True),
    ("SELECT count(DISTINCT country) FROM singer", "SELECT count(country) FROM singer", True),
    ("SELECT name, age FROM singer", "SELECT age, name FROM singer", True),  # a set of projections
    (
        "SELECT name FROM singer WHERE age > 20 AND country = 'x'",
        "SELECT name FROM singer WHERE country = 'y' AND age > 1",
        True,
    ),
    (
        f"SELECT T2.name {JOIN}",
        "SELECT stadium.name FROM stadium JOIN concert ON stadium.stadium_id = concert.stadium_id",
        True,
    ),
    # through the foreign key, concert.stadium_id is stadium.stadium_id
    (f"SELECT T1.stadium_id {JOIN}", f"SELECT T2.stadium_id {JOIN}", True),
    ("SELECT name FROM singer WHERE age > 20", "SELECT name FROM singer WHERE age < 20", False),
    ("SELECT name FROM singer WHERE age > 20", "SELECT name FROM singer WHERE age > 20 OR age < 10", False),
    ("SELECT count(*) FROM singer", "SELECT count(singer_id) FROM singer", False),
    ("SELECT name FROM singer ORDER BY age DESC LIMIT 1", "SELECT name FROM singer ORDER BY age LIMIT 1", False),
    ("SELECT name FROM singer ORDER BY age DESC LIMIT 1", "SELECT name FROM singer ORDER BY age DESC", False),
    ("SELECT name FROM singer", "SELECT name FROM stadium", False),
    ("SELECT country FROM singer GROUP BY country", "SELECT country FROM singer GROUP BY age", False),
    (
        "SELECT country FROM singer GROUP BY country HAVING count(*) > 1",
        "SELECT country FROM singer GROUP BY country",
        False,
    ),
    ("SELECT a FROM t UNION SELECT b FROM u", "SELECT a FROM t INTERSECT SELECT b FROM u", False),
    (
        "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM singer_in_concert)",
        "SELECT name FROM singer WHERE singer_id IN (SELECT concert_id FROM singer_in_concert)",
        False,
    ),
    (
        "SELECT name FROM singer WHERE singer_id NOT IN (SELECT singer_id FROM singer_in_concert)",
        "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM singer_in_concert)",
        False,
    ),
    ("SELECT name FROM singer", "SELECT name FROM singer WHERE", False),  # does not parse
]


@pytest.mark.parametrize(("gold", "pred", "expected"), PAIRS)
def test_exact_match_pairs(schema, gold: str, pred: str, expected: bool) -> None:
    assert exact_match(pred, gold, schema) is expected


def test_set_operations_nest_to_the_right_as_in_spider() -> None:
    comp = components("SELECT a FROM t UNION SELECT b FROM u EXCEPT SELECT c FROM v")
    assert set(comp.iuen) == {"union"}
    assert set(comp.iuen["union"].iuen) == {"except"}
    assert "union" in comp.keywords


def test_fk_map(schema) -> None:
    fk = fk_canonical_map(schema)
    assert fk["concert.stadium_id"] == fk["stadium.stadium_id"]
    assert fk["singer_in_concert.singer_id"] == fk["singer.singer_id"]


@pytest.mark.data
def test_gold_matches_itself_on_dev() -> None:
    dev = json.loads(require_data("spider/dev.json").read_text())
    tables = load_tables(require_data("spider"))
    misses = [ex["query"] for ex in dev if not exact_match(ex["query"], ex["query"], tables[ex["db_id"]])]
    assert not misses, misses[:5]
