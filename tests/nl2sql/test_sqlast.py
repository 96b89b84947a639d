"""sqlglot helpers: parsing, Spider strings and the normalisation behind every comparison."""

from __future__ import annotations

import pytest

from prunekit.nl2sql.errors import SQLParseError
from prunekit.nl2sql.sqlast import canonical_sql, conjuncts, double_quotes_to_strings, parse_sql


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ('SELECT a FROM t WHERE b = "x"', "SELECT a FROM t WHERE b = 'x'"),
        ('SELECT a FROM t WHERE b = "it\'s"', "SELECT a FROM t WHERE b = 'it''s'"),
        ('SELECT a FROM t WHERE b = "say ""hi"""', "SELECT a FROM t WHERE b = 'say \"hi\"'"),
        ("SELECT a FROM t WHERE b = 'keep \"this\"'", "SELECT a FROM t WHERE b = 'keep \"this\"'"),
        ('SELECT `a` FROM [t] -- "comment"', 'SELECT `a` FROM [t] -- "comment"'),
        ('SELECT a /* "x" */ FROM t', 'SELECT a /* "x" */ FROM t'),
    ],
)
def test_double_quotes_to_strings(sql: str, expected: str) -> None:
    assert double_quotes_to_strings(sql) == expected


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SELECT T1.name FROM singer AS T1 WHERE T1.age > 20", "select name from SINGER where age > 20"),
        (
            "SELECT count(*) AS c FROM t GROUP BY x ORDER BY c DESC",
            "SELECT COUNT(*) FROM t GROUP BY x ORDER BY COUNT(*) DESC",
        ),
        ("SELECT a FROM t WHERE ((b = 1)) AND (c = 2)", "SELECT a FROM t WHERE b = 1 AND c = 2"),
        ("SELECT a FROM t ORDER BY a ASC", "SELECT a FROM t ORDER BY a"),
        ("SELECT a FROM t JOIN u ON t.x = u.y", "SELECT a FROM t INNER JOIN u ON u.y = t.x"),
        ("SELECT a FROM t WHERE 1 = b", "SELECT a FROM t WHERE b = 1"),
        ("SELECT a FROM t WHERE b = 1.0", "SELECT a FROM t WHERE b = 1"),
        ('SELECT a FROM t WHERE b = "x"', "SELECT a FROM t WHERE b = 'x'"),
    ],
)
def test_equal_up_to_normalisation(a: str, b: str) -> None:
    assert canonical_sql(a) == canonical_sql(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SELECT a FROM t WHERE (b = 1 OR c = 2) AND d = 3", "SELECT a FROM t WHERE b = 1 OR c = 2 AND d = 3"),
        ("SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b = 2"),
        ("SELECT a FROM t WHERE b = 'X'", "SELECT a FROM t WHERE b = 'x'"),  # values keep their case
        ("SELECT (x + 1) * 2 FROM t", "SELECT x + 1 * 2 FROM t"),
        ("SELECT a.x FROM t AS a JOIN t AS b ON a.y = b.y", "SELECT b.x FROM t AS a JOIN t AS b ON a.y = b.y"),
    ],
)
def test_different_queries_stay_different(a: str, b: str) -> None:
    assert canonical_sql(a) != canonical_sql(b)


def test_normalisation_keeps_names_an_outer_query_reads() -> None:
    sql = "SELECT max(n) FROM (SELECT a AS n FROM t ORDER BY n) AS sub WHERE sub.n > 1"
    assert canonical_sql(sql) == "SELECT MAX(sub.n) FROM (SELECT t.a AS n FROM t ORDER BY n) AS sub WHERE sub.n > 1"


def test_parse_errors() -> None:
    with pytest.raises(SQLParseError, match="exactly one"):
        parse_sql("SELECT 1; SELECT 2")
    with pytest.raises(SQLParseError, match="does not parse"):
        parse_sql("SELECT (")
    assert parse_sql("SELECT 1;").sql() == "SELECT 1"


def test_conjuncts_look_through_parentheses() -> None:
    tree = parse_sql("SELECT * FROM t WHERE (a = 1 AND (b = 2)) AND (c = 3 OR d = 4)")
    assert [c.sql() for c in conjuncts(tree.args["where"])] == ["a = 1", "b = 2", "c = 3 OR d = 4"]
