"""Decomposition: hand-written tricky queries (fixture file) and Spider's gold queries (data tests)."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from prunekit.nl2sql.decompose import STEP_KINDS, decompose, is_partial_subtree
from prunekit.nl2sql.errors import SQLParseError
from prunekit.nl2sql.safe_exec import SafeDatabase
from prunekit.nl2sql.sqlast import canonical_sql, parse_sql
from tests.conftest import require_data
from tests.nl2sql.toydb import make_toy_db

FIXTURES = Path(__file__).parent / "fixtures"
TRICKY = json.loads((FIXTURES / "tricky_queries.json").read_text())


@pytest.fixture(scope="module")
def toy_db(tmp_path_factory: pytest.TempPathFactory):
    path = make_toy_db(tmp_path_factory.mktemp("decompose") / "toy.sqlite")
    with SafeDatabase(path) as db:
        yield db


@pytest.mark.parametrize("case", TRICKY, ids=[c["name"] for c in TRICKY])
def test_tricky_query(case: dict, toy_db: SafeDatabase) -> None:
    steps = decompose(case["sql"])
    assert [s.kind for s in steps] == case["kinds"]
    assert [s.index for s in steps] == list(range(len(steps)))
    for step in steps:
        assert step.kind in STEP_KINDS
        assert step.question.endswith("?")
        assert all(d < step.index for d in step.depends_on)
        parse_sql(step.sql)
        toy_db.execute(step.sql)  # every partial query runs
        assert is_partial_subtree(step.sql, case["sql"]), step
    assert canonical_sql(steps[-1].sql) == canonical_sql(case["sql"])
    # the final answer is the query's own result
    assert toy_db.execute(steps[-1].sql).rows == toy_db.execute(case["sql"]).rows


def test_partial_sql_builds_up_clause_by_clause() -> None:
    steps = decompose(
        "SELECT T2.name, count(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id "
        "WHERE T1.year = '2014' GROUP BY T1.stadium_id HAVING count(*) > 1 ORDER BY count(*) DESC LIMIT 1"
    )
    join = "FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id"
    assert [s.sql for s in steps] == [
        f"SELECT * {join}",
        f"SELECT * {join} WHERE T1.year = '2014'",
        f"SELECT T1.stadium_id {join} WHERE T1.year = '2014' GROUP BY T1.stadium_id",
        f"SELECT T1.stadium_id {join} WHERE T1.year = '2014' GROUP BY T1.stadium_id HAVING COUNT(*) > 1",
        f"SELECT T1.stadium_id {join} WHERE T1.year = '2014' GROUP BY T1.stadium_id HAVING COUNT(*) > 1 "
        "ORDER BY COUNT(*) DESC LIMIT 1",
        f"SELECT T2.name, COUNT(*) {join} WHERE T1.year = '2014' GROUP BY T1.stadium_id HAVING COUNT(*) > 1 "
        "ORDER BY COUNT(*) DESC LIMIT 1",
    ]
    assert steps[0].question == (
        "Which rows come from joining concert (as T1) and stadium (as T2) on T1.stadium_id = T2.stadium_id?"
    )
    assert steps[1].question == "Which of these rows satisfy T1.year = '2014'?"
    assert steps[4].question == "What are they sorted by COUNT(*) descending, keeping the first 1?"
    assert [s.depends_on for s in steps] == [(), (0,), (1,), (2,), (3,), (4,)]


def test_subquery_steps_come_first_and_feed_the_outer_query() -> None:
    steps = decompose("SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)")
    assert [(s.kind, s.scope) for s in steps] == [
        ("from", "subquery 1"),
        ("select", "subquery 1"),
        ("from", "main"),
        ("where", "main"),
        ("select", "main"),
    ]
    assert steps[1].sql == "SELECT AVG(age) FROM singer"
    assert 1 in steps[2].depends_on
    union = decompose("SELECT a FROM t UNION SELECT b FROM u")
    assert union[-1].kind == "set_op" and union[-1].depends_on == (1, 3)
    assert union[-1].question == "Which rows are in the result of step 1 or in that of step 3?"


def test_templates_are_deterministic() -> None:
    sql = "SELECT country, count(*) FROM singer WHERE age > 20 GROUP BY country HAVING count(*) > 1"
    assert decompose(sql) == decompose(sql)


def test_decompose_refuses_what_is_not_a_query() -> None:
    with pytest.raises(ValueError):
        decompose("DELETE FROM singer")
    with pytest.raises(SQLParseError):
        decompose("SELECT 1; SELECT 2")


GOLD = (
    "SELECT T2.name, count(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id "
    "WHERE T1.year = '2014' GROUP BY T1.stadium_id ORDER BY count(*) DESC LIMIT 1"
)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ("SELECT * FROM concert", True),
        ("SELECT * FROM stadium", True),
        ("SELECT * FROM stadium JOIN concert ON concert.stadium_id = stadium.stadium_id", True),
        ("select * from CONCERT as c where c.YEAR = '2014'", True),
        ("SELECT * FROM concert, stadium WHERE concert.stadium_id = stadium.stadium_id", True),
        ("SELECT stadium.name FROM concert JOIN stadium ON concert.stadium_id = stadium.stadium_id", True),
        (
            "SELECT concert.stadium_id FROM concert JOIN stadium ON concert.stadium_id = stadium.stadium_id "
            "GROUP BY concert.stadium_id",
            True,
        ),
        (
            "SELECT b.name, COUNT(*) FROM concert AS a JOIN stadium AS b ON a.stadium_id = b.stadium_id "
            "WHERE (a.year = '2014') GROUP BY a.stadium_id ORDER BY COUNT(*) DESC LIMIT 1",
            True,
        ),
        ("SELECT * FROM singer", False),  # a table the gold does not read
        ("SELECT * FROM concert WHERE year = '2015'", False),  # another value
        ("SELECT * FROM concert WHERE year > '2014'", False),  # another operator
        (
            "SELECT * FROM concert JOIN stadium ON concert.stadium_id = stadium.stadium_id ORDER BY COUNT(*) LIMIT 1",
            False,
        ),  # another direction
        (
            "SELECT * FROM concert JOIN stadium ON concert.stadium_id = stadium.stadium_id "
            "ORDER BY COUNT(*) DESC LIMIT 3",
            False,
        ),  # another limit
        (
            "SELECT DISTINCT stadium.name FROM concert JOIN stadium ON concert.stadium_id = stadium.stadium_id",
            False,
        ),  # DISTINCT the gold does not have
        (
            "SELECT stadium.location FROM concert JOIN stadium ON concert.stadium_id = stadium.stadium_id",
            False,
        ),  # a projection that is not in the gold
        (
            "SELECT stadium.name FROM concert JOIN stadium ON concert.stadium_id = stadium.stadium_id "
            "GROUP BY stadium.name",
            False,
        ),  # another group key
        ("SELECT * FROM concert LEFT JOIN stadium ON concert.stadium_id = stadium.stadium_id", False),  # join kind
        ("DELETE FROM concert", False),
    ],
)
def test_is_partial_subtree(step: str, expected: bool) -> None:
    assert is_partial_subtree(step, GOLD) is expected


def test_is_partial_subtree_with_set_operations_and_nesting() -> None:
    gold = "SELECT country FROM singer WHERE age > 40 INTERSECT SELECT country FROM singer WHERE age < 30"
    assert is_partial_subtree("SELECT country FROM singer WHERE age < 30", gold)
    assert is_partial_subtree("SELECT * FROM singer WHERE age > 40", gold)
    assert is_partial_subtree(gold.lower(), gold)
    assert not is_partial_subtree(gold.replace("INTERSECT", "UNION"), gold)
    assert not is_partial_subtree("SELECT * FROM singer WHERE age > 40 AND age < 30", gold)
    assert not is_partial_subtree(
        "SELECT country FROM singer WHERE age < 30 INTERSECT SELECT country FROM singer WHERE age > 40", gold
    )
    nested = "SELECT name FROM singer WHERE singer_id IN (SELECT singer_id FROM singer_in_concert)"
    assert is_partial_subtree("SELECT singer_id FROM singer_in_concert", nested)
    assert is_partial_subtree(
        "SELECT * FROM singer WHERE singer_id IN (SELECT singer_id FROM singer_in_concert)", nested
    )
    assert not is_partial_subtree(
        "SELECT * FROM singer WHERE singer_id IN (SELECT concert_id FROM singer_in_concert)", nested
    )
    # Spider writes strings in double quotes; a step written with single quotes is the same value
    assert is_partial_subtree(
        "SELECT * FROM singer WHERE country = 'France'", 'SELECT name FROM singer WHERE country = "France"'
    )


def test_is_partial_subtree_uses_the_schema_to_qualify_columns() -> None:
    schema = {"singer": {"singer_id", "name"}, "singer_in_concert": {"singer_id", "concert_id"}}
    gold = "SELECT T1.name FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id"
    step = "SELECT name FROM singer JOIN singer_in_concert ON singer.singer_id = singer_in_concert.singer_id"
    assert not is_partial_subtree(step, gold)  # without a schema `name` is not known to be singer.name
    assert is_partial_subtree(step, gold, schema=schema)


# ---------------------------------------------------------------------------------------------
# Data tests over Spider's gold queries


def _check_gold_queries(examples: list[dict], db_root: Path | None) -> dict[str, object]:
    failures: list[tuple[str, str]] = []
    exec_failures: list[tuple[str, str]] = []
    kinds: Counter[str] = Counter()
    n_steps = executed = 0
    dbs: dict[str, SafeDatabase] = {}
    started = time.monotonic()
    try:
        for ex in examples:
            try:
                tree = parse_sql(ex["query"])
                steps = decompose(tree)  # does not modify `tree`
                parsed = [parse_sql(step.sql) for step in steps]  # every partial query parses
                if canonical_sql(parsed[-1]) != canonical_sql(tree):
                    failures.append((ex["query"], "last step differs: " + steps[-1].sql))
            except Exception as err:  # a failure to decompose is what we count
                failures.append((ex["query"], repr(err)))
                continue
            n_steps += len(steps)
            kinds.update(s.kind for s in steps)
            if db_root is None:
                continue
            path = db_root / ex["db_id"] / f"{ex['db_id']}.sqlite"
            if not path.exists():
                continue
            db = dbs.get(ex["db_id"]) or dbs.setdefault(ex["db_id"], SafeDatabase(path))
            for step in steps:
                executed += 1
                try:
                    db.execute(step.sql, timeout_s=10)
                except Exception as err:
                    exec_failures.append((step.sql, repr(err)))
    finally:
        for db in dbs.values():
            db.close()
    return {
        "n": len(examples),
        "failures": failures,
        "steps": n_steps,
        "kinds": kinds,
        "executed": executed,
        "exec_failures": exec_failures,
        "seconds": time.monotonic() - started,
    }


@pytest.mark.data
def test_decomposes_every_spider_dev_gold_query_into_runnable_steps() -> None:
    dev = json.loads(require_data("spider/dev.json").read_text())
    report = _check_gold_queries(dev, require_data("spider/database"))
    print(
        f"\ndev: {report['n']} gold queries, {report['steps']} steps {dict(report['kinds'])}, "
        f"decomposition failures {len(report['failures'])}, executed {report['executed']} partial queries, "
        f"execution failures {len(report['exec_failures'])}, {report['seconds']:.1f}s"
    )
    assert not report["failures"], report["failures"][:5]
    assert report["executed"] > 3000
    assert len(report["exec_failures"]) / report["executed"] <= 0.005, report["exec_failures"][:5]


@pytest.mark.data
def test_decomposes_a_large_sample_of_spider_train_gold_queries() -> None:
    train = json.loads(require_data("spider/train_spider_slim.json").read_text())
    sample = random.Random(0).sample(train, 1500)
    report = _check_gold_queries(sample, None)
    print(
        f"\ntrain sample: {report['n']} gold queries, {report['steps']} steps, "
        f"decomposition failures {len(report['failures'])}, {report['seconds']:.1f}s"
    )
    assert len(report["failures"]) / report["n"] <= 0.002, report["failures"][:5]


@pytest.mark.data
def test_every_step_of_a_gold_decomposition_is_a_partial_subtree_of_the_gold() -> None:
    dev = json.loads(require_data("spider/dev.json").read_text())
    bad = [
        (ex["query"], step.sql)
        for ex in dev[::3]
        for step in decompose(ex["query"])
        if not is_partial_subtree(step.sql, ex["query"])
    ]
    assert not bad, bad[:5]
