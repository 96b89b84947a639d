"""Execution match: (gold, prediction) pairs written to probe test-suite-sql-eval's rules, and gold vs gold on dev."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from prunekit.eval.spider.data import load_spider
from prunekit.eval.spider.exec_match import (
    ExecEvaluator,
    GoldExecutionError,
    exec_match,
    gold_orders_rows,
    postprocess,
    remove_distinct,
    results_match,
)
from tests.conftest import require_data
from tests.nl2sql.toydb import make_toy_db


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_db(tmp_path_factory.mktemp("exec") / "toy.sqlite")


@pytest.fixture(scope="module")
def evaluator():
    with ExecEvaluator(timeout_s=0.5) as ev:
        yield ev


FRANCE = "SELECT name FROM singer WHERE country = 'France'"

# (id, gold, prediction, match, reason)
PAIRS = [
    # row order counts only when the gold's outermost query has ORDER BY
    ("order_free", FRANCE, FRANCE + " ORDER BY name DESC", True, "match"),
    (
        "order_required_wrong",
        "SELECT name FROM singer ORDER BY age",
        "SELECT name FROM singer ORDER BY age DESC",
        False,
        "order",
    ),
    (
        "order_required_right",
        "SELECT name FROM singer ORDER BY age",
        "SELECT name FROM singer ORDER BY age ASC",
        True,
        "match",
    ),
    (
        "order_only_in_subquery",
        "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM singer ORDER BY age LIMIT 3)",
        "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM singer ORDER BY age LIMIT 3) "
        "ORDER BY name DESC",
        True,
        "match",
    ),
    (
        "order_on_set_operation",
        "SELECT name FROM singer WHERE age > 40 UNION SELECT name FROM singer WHERE age < 30 ORDER BY name",
        "SELECT name FROM singer WHERE age > 40 UNION SELECT name FROM singer WHERE age < 30 ORDER BY name DESC",
        False,
        "order",
    ),
    # bags, not sets
    (
        "duplicates_doubled",
        "SELECT country FROM singer",
        "SELECT country FROM singer UNION ALL SELECT country FROM singer",
        False,
        "row_count",
    ),
    (
        "same_set_other_bag",
        "SELECT is_male FROM singer WHERE singer_id <= 3",
        "SELECT is_male FROM singer WHERE singer_id IN (1, 4, 2)",
        False,
        "values",
    ),
    (
        "distinct_removed_as_reference",
        "SELECT country FROM singer WHERE country IS NOT NULL",
        "SELECT DISTINCT country FROM singer WHERE country IS NOT NULL",
        True,
        "match",
    ),
    (
        "count_distinct_removed_as_reference",
        "SELECT count(DISTINCT country) FROM singer",
        "SELECT count(country) FROM singer",
        True,
        "match",
    ),
    # columns up to a permutation
    ("two_columns_swapped", "SELECT name, age FROM singer", "SELECT age, name FROM singer", True, "match"),
    (
        "three_columns_swapped_ordered",
        "SELECT name, age, country FROM singer ORDER BY age",
        "SELECT country, name, age FROM singer ORDER BY age",
        True,
        "match",
    ),
    (
        "same_column_values_other_rows",
        "SELECT 1, 2 UNION ALL SELECT 2, 1",
        "SELECT 1, 1 UNION ALL SELECT 2, 2",
        False,
        "values",
    ),
    (
        "permutation_needs_search",
        "SELECT 1, 1, 2 UNION ALL SELECT 2, 1, 1",
        "SELECT 1, 2, 1 UNION ALL SELECT 1, 1, 2",
        True,
        "match",
    ),
    ("extra_column", "SELECT name FROM singer", "SELECT name, age FROM singer", False, "column_count"),
    # NULLs
    ("null_rows_reordered", "SELECT age FROM singer", "SELECT age FROM singer ORDER BY age", True, "match"),
    ("null_replaced", "SELECT age FROM singer", "SELECT coalesce(age, 0) FROM singer", False, "values"),
    (
        "null_vs_empty_string",
        "SELECT country FROM singer WHERE singer_id = 7",
        "SELECT '' FROM singer WHERE singer_id = 7",
        False,
        "values",
    ),
    (
        "aggregate_skips_null",
        "SELECT avg(value) FROM score WHERE label = 'b'",
        "SELECT sum(value) / count(value) FROM score WHERE label = 'b'",
        True,
        "match",
    ),
    # floats and types
    ("float_bits_differ", "SELECT 0.1 + 0.2", "SELECT 0.3", False, "values"),
    ("float_same_computation", "SELECT avg(value) FROM score", "SELECT avg(value) FROM score AS s", True, "match"),
    ("int_equals_float", "SELECT count(*) FROM singer", "SELECT 7.0", True, "match"),
    ("int_is_not_text", "SELECT count(*) FROM singer", "SELECT '7'", False, "values"),
    # failures of the prediction score 0
    ("syntax_error", FRANCE, "SELECT name FROM singer WHERE", False, "pred_error"),
    ("unknown_column", FRANCE, "SELECT nom FROM singer", False, "pred_error"),
    ("unsafe_write", FRANCE, "DELETE FROM singer", False, "pred_unsafe"),
    ("empty_prediction", FRANCE, "", False, "pred_unsafe"),
    (
        "timeout",
        FRANCE,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        False,
        "pred_timeout",
    ),
    # empty results
    (
        "both_empty_other_columns",
        "SELECT name FROM singer WHERE age > 100",
        "SELECT name, age FROM singer WHERE 0",
        True,
        "match",
    ),
    (
        "gold_empty_pred_not",
        "SELECT name FROM singer WHERE age > 100",
        "SELECT name FROM singer WHERE age > 50",
        False,
        "row_count",
    ),
    (
        "pred_empty_gold_not",
        "SELECT name FROM singer WHERE age > 50",
        "SELECT name FROM singer WHERE age > 100",
        False,
        "row_count",
    ),
    # the reference's text clean-ups
    (
        "spaced_operator",
        "SELECT name FROM singer WHERE age >= 40",
        "SELECT name FROM singer WHERE age > = 40",
        True,
        "match",
    ),
    ("spider_double_quoted_value", FRANCE, 'SELECT name FROM singer WHERE country = "France"', True, "match"),
]


@pytest.mark.parametrize(("gold", "pred", "match", "reason"), [p[1:] for p in PAIRS], ids=[p[0] for p in PAIRS])
def test_probe_pairs(toy: Path, evaluator: ExecEvaluator, gold: str, pred: str, match: bool, reason: str) -> None:
    started = time.monotonic()
    outcome = evaluator.evaluate(toy, pred, gold)
    assert (outcome.match, outcome.reason) == (match, reason), outcome
    assert outcome.score == int(match)
    assert time.monotonic() - started < 2.0


def test_keep_distinct_compares_what_the_queries_say(toy: Path) -> None:
    gold = "SELECT country FROM singer WHERE country IS NOT NULL"
    pred = "SELECT DISTINCT country FROM singer WHERE country IS NOT NULL"
    assert exec_match(toy, pred, gold).match
    strict = exec_match(toy, pred, gold, keep_distinct=True)
    assert (strict.match, strict.reason) == (False, "row_count")
    assert not exec_match(
        toy, "SELECT count(country) FROM singer", "SELECT count(DISTINCT country) FROM singer", keep_distinct=True
    ).match


def test_float_digits_tolerates_rounding_noise(toy: Path) -> None:
    assert not exec_match(toy, "SELECT 0.3", "SELECT 0.1 + 0.2").match
    assert exec_match(toy, "SELECT 0.3", "SELECT 0.1 + 0.2", float_digits=12).match
    assert not exec_match(toy, "SELECT 0.31", "SELECT 0.1 + 0.2", float_digits=12).match


def test_the_gold_must_execute(toy: Path) -> None:
    with pytest.raises(GoldExecutionError, match="gold query fails"):
        exec_match(toy, "SELECT 1", "SELECT nope FROM singer")


def test_a_test_suite_needs_a_match_on_every_database(tmp_path: Path, toy: Path) -> None:
    other = make_toy_db(tmp_path / "other.sqlite")
    import sqlite3

    with sqlite3.connect(other) as conn:
        conn.execute("UPDATE singer SET age = 60 WHERE singer_id = 2")
    gold = "SELECT name FROM singer WHERE age > 50"
    pred = "SELECT name FROM singer WHERE singer_id = 1"  # right on toy, wrong on other
    assert exec_match(toy, pred, gold).match
    assert not exec_match([toy, other], pred, gold).match
    assert exec_match([toy, other], gold, gold).match


def test_gold_results_are_cached(toy: Path) -> None:
    with ExecEvaluator() as ev:
        ev.evaluate(toy, "SELECT 1", FRANCE)
        ev.evaluate(toy, FRANCE, FRANCE)
        assert len(ev._gold_cache) == 1


def test_helpers() -> None:
    assert gold_orders_rows("SELECT a FROM t ORDER BY a")
    assert gold_orders_rows("SELECT a FROM t UNION SELECT b FROM u ORDER BY 1")
    assert not gold_orders_rows("SELECT a FROM t WHERE b IN (SELECT b FROM u ORDER BY b LIMIT 1)")
    assert (
        postprocess("a > = 1 AND b < = 2 AND c ! = 3 AND d = YEAR(CURDATE())")
        == "a >= 1 AND b <= 2 AND c != 3 AND d = 2020"
    )
    assert remove_distinct("SELECT DISTINCT a, count(DISTINCT b) FROM t WHERE c = 'distinct'") == (
        "SELECT a, count(b) FROM t WHERE c = 'distinct'"
    )
    assert results_match([], [], order_matters=True)
    assert results_match([(None, "a", b"x")], [("a", b"x", None)], order_matters=False)
    assert not results_match([(1, 2)], [(1, 2), (1, 2)], order_matters=False)
    assert results_match([(1.0000000001,)], [(1.0,)], order_matters=False, float_digits=6)


def test_column_search_stays_fast_on_look_alike_columns() -> None:
    rows = [(None,) * 9 + (i,) for i in range(200)]
    started = time.monotonic()
    assert results_match(rows, [tuple(reversed(r)) for r in rows], order_matters=False)
    twins = [(i % 2,) * 10 for i in range(200)]
    assert results_match(twins, twins, order_matters=True)
    assert not results_match(twins, twins[::-1], order_matters=True)
    assert time.monotonic() - started < 1.0


@pytest.mark.data
def test_gold_against_itself_on_every_runnable_dev_example() -> None:
    split = load_spider(require_data("spider"), "dev")
    assert len(split.examples) == 972 and split.missing_databases == {"wta_1": 62}
    started = time.monotonic()
    misses = []
    with ExecEvaluator(cache_gold=False) as ev:
        for ex in split.examples:
            outcome = ev.evaluate(ex.db_path, ex.query, ex.query)
            if not outcome.match:
                misses.append((ex.index, outcome))
    seconds = time.monotonic() - started
    rate = 1 - len(misses) / len(split.examples)
    print(f"\ngold self-EX on {len(split.examples)} runnable dev examples: {rate:.4f}, {seconds:.1f}s")
    assert not misses, misses[:5]
