"""Safe execution: read-only, one query, bounded time/rows/size, clear refusals; 60+ hostile inputs."""

from __future__ import annotations

import os
import sqlite3
import time
import tracemalloc
from pathlib import Path

import pytest

from prunekit.decoding.errors import InvalidRequestError
from prunekit.nl2sql import safe_exec
from prunekit.nl2sql.errors import (
    DatabaseNotFoundError,
    SQLError,
    SQLExecutionError,
    SQLParseError,
    SQLTimeoutError,
    UnsafeSQLError,
)
from prunekit.nl2sql.safe_exec import QueryResult, SafeDatabase, SafeExecConfig, check_sql, execute_sql
from tests.nl2sql.toydb import file_hash, make_toy_db

TIMEOUT = 0.5
SLACK = 0.75  # the check before running, the hard-deadline grace (0.25 s) and a busy machine

TABLE_COUNTS = "SELECT (SELECT count(*) FROM singer), (SELECT count(*) FROM concert), (SELECT count(*) FROM big)"


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    make_toy_db(folder / "toy.sqlite", big_rows=3000)
    return folder


@pytest.fixture(scope="module")
def db(hostile_dir: Path):
    with SafeDatabase(hostile_dir / "toy.sqlite", SafeExecConfig(timeout_s=TIMEOUT, max_rows=10_000)) as database:
        yield database


def _hostile(tmp: str) -> list[tuple[str, str]]:
    return _hostile_statements(tmp) + _hostile_workloads(tmp)


def _hostile_statements(tmp: str) -> list[tuple[str, str]]:
    """What is not one read-only query: writes, attachments, pragmas, transactions, hidden second statements."""
    return [
        # writes of every kind
        ("insert", "INSERT INTO singer VALUES (99, 'x', 'y', 1, 'T')"),
        ("update", "UPDATE singer SET age = 0"),
        ("delete", "DELETE FROM singer"),
        ("drop", "DROP TABLE singer"),
        ("create", "CREATE TABLE evil (x)"),
        ("alter", "ALTER TABLE singer ADD COLUMN evil TEXT"),
        ("replace", "REPLACE INTO singer VALUES (1, 'x', 'y', 1, 'T')"),
        ("insert_or_replace", "INSERT OR REPLACE INTO singer (singer_id) VALUES (1)"),
        ("upsert", "INSERT INTO singer (singer_id) VALUES (1) ON CONFLICT DO NOTHING"),
        ("create_index", "CREATE INDEX evil_idx ON singer (name)"),
        ("create_view", "CREATE VIEW evil_view AS SELECT 1"),
        ("create_trigger", "CREATE TRIGGER evil AFTER INSERT ON singer BEGIN DELETE FROM singer; END"),
        ("create_temp_as", "CREATE TEMP TABLE t AS SELECT * FROM singer"),
        ("select_into", "SELECT * INTO evil FROM singer"),
        ("cte_delete", "WITH x AS (SELECT 1) DELETE FROM singer"),
        ("cte_body_delete", "WITH x AS (DELETE FROM singer RETURNING *) SELECT * FROM x"),
        ("values", "VALUES (1), (2)"),
        # attach / detach
        ("attach", f"ATTACH DATABASE '{tmp}/evil.db' AS evil"),
        ("attach_memory", "ATTACH ':memory:' AS m"),
        ("attach_then_write", f"ATTACH '{tmp}/evil.db' AS evil; CREATE TABLE evil.t (x)"),
        ("detach", "DETACH DATABASE main"),
        # pragmas
        ("pragma_writable_schema", "PRAGMA writable_schema = 1"),
        ("pragma_journal", "PRAGMA journal_mode = DELETE"),
        ("pragma_query_only_off", "PRAGMA query_only = 0"),
        ("pragma_read", "PRAGMA table_info(singer)"),
        ("pragma_function", "SELECT * FROM pragma_table_info('singer')"),
        ("pragma_database_list", "SELECT * FROM pragma_database_list"),
        # transactions and maintenance
        ("begin_delete_commit", "BEGIN; DELETE FROM singer; COMMIT"),
        ("begin_immediate", "BEGIN IMMEDIATE"),
        ("savepoint", "SAVEPOINT s"),
        ("vacuum", "VACUUM"),
        ("vacuum_into", f"VACUUM INTO '{tmp}/copy.db'"),
        ("reindex", "REINDEX"),
        ("analyze", "ANALYZE"),
        ("explain", "EXPLAIN SELECT 1"),
        # several statements, comments hiding statements
        ("two_statements", "SELECT 1; DROP TABLE singer"),
        ("three_statements", "SELECT 1;DELETE FROM singer;SELECT 2;"),
        ("block_comment_then_delete", "SELECT 1 /* harmless */; DELETE FROM singer"),
        ("line_comment_then_delete", "SELECT 1 -- a comment\n; DELETE FROM singer"),
        ("string_hiding_semicolon", "SELECT '; DELETE FROM singer; --'; DELETE FROM singer"),
        ("comment_before_delete", "/* SELECT */ DELETE FROM singer"),
        ("comment_hides_delete", "SELECT 1 /*; DELETE FROM singer */"),
        ("union_then_pragma", "SELECT 1 UNION SELECT 2; PRAGMA writable_schema = 1"),
        ("nul_byte", "SELECT 1\x00; DELETE FROM singer"),
        ("fullwidth_semicolon", "SELECT 1\uff1b DROP TABLE singer"),
        ("quoted_alias", 'SELECT name AS "x; DROP TABLE singer" FROM singer'),
    ]


def _hostile_workloads(tmp: str) -> list[tuple[str, str]]:
    """Queries that try to read files or exhaust time and memory, and inputs the parser must survive."""
    big_like = "%a" * 2000
    deep = "SELECT " + "(" * 3000 + "1" + ")" * 3000
    return [
        # dangerous functions
        ("load_extension", "SELECT load_extension('/tmp/evil.so')"),
        ("readfile", "SELECT readfile('/etc/passwd')"),
        ("writefile", f"SELECT writefile('{tmp}/written', 'data')"),
        ("edit", "SELECT edit('x')"),
        ("fts3_tokenizer", "SELECT fts3_tokenizer('simple')"),
        ("fsdir", "SELECT * FROM fsdir('/')"),
        # recursive-CTE bombs
        (
            "recursive_count_forever",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        ),
        ("recursive_rows_forever", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"),
        (
            "recursive_doubling_string",
            "WITH RECURSIVE c(x, s) AS (SELECT 1, 'ab' UNION ALL SELECT x + 1, s || s FROM c) "
            "SELECT max(length(s)) FROM c",
        ),
        (
            "recursive_fibonacci",
            "WITH RECURSIVE f(a, b) AS (SELECT 0, 1 UNION ALL SELECT b, a + b FROM f) SELECT count(*) FROM f",
        ),
        (
            "recursive_fanout",
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t, big WHERE n < 50) SELECT count(*) FROM t",
        ),
        # cross-join explosions
        ("cross_join_count", "SELECT count(*) FROM big a, big b, big c"),
        ("cross_join_rows", "SELECT * FROM big a, big b"),
        ("cross_join_sort", "SELECT a.s || b.s AS k FROM big a CROSS JOIN big b ORDER BY k"),
        ("cross_join_group", "SELECT a.x % 7, count(*) FROM big a, big b GROUP BY 1"),
        ("cross_join_distinct", "SELECT DISTINCT a.x * b.x FROM big a, big b"),
        ("nested_derived_cross", "SELECT count(*) FROM (SELECT a.x FROM big a, big b) t, singer"),
        # huge LIKE / GLOB patterns
        ("huge_like_pattern", f"SELECT * FROM big WHERE s LIKE '{big_like}'"),
        ("huge_glob_pattern", "SELECT * FROM big WHERE s GLOB '" + "*a" * 2000 + "'"),
        ("like_on_cross_join", "SELECT count(*) FROM big a, big b WHERE a.s || b.s LIKE '%v%a%l%u%e%9%9%9%'"),
        ("like_against_megabyte", "SELECT printf('%.*c', 999999, 'a') LIKE '" + "%a" * 400 + "%b'"),
        # huge allocations and single-call CPU burners
        ("zeroblob_huge", "SELECT zeroblob(2000000000)"),
        ("randomblob_huge", "SELECT randomblob(1000000000)"),
        ("randomblob_cross", "SELECT length(randomblob(999999)) FROM big a, big b"),
        ("group_concat_cross", "SELECT group_concat(a.s) FROM big a, big b"),
        ("hex_zeroblob", "SELECT hex(zeroblob(999999))"),
        ("printf_precision", "SELECT printf('%.*c', 2000000000, 'x')"),
        ("printf_width_star", "SELECT format('%*d', 2000000000, 1)"),
        ("replace_quadratic", "SELECT replace(printf('%.*c', 999999, 'a'), printf('%.*c', 500000, 'a') || 'b', 'x')"),
        ("instr_quadratic", "SELECT instr(printf('%.*c', 999999, 'a'), printf('%.*c', 500000, 'a') || 'b')"),
        ("replace_blowup", "SELECT replace(printf('%.*c', 900000, 'a'), 'a', 'aaaaaaaaaa')"),
        ("json_nesting", "SELECT json(printf('%.*c', 100000, '['))"),
        ("sort_big_blobs", "SELECT randomblob(900000) FROM big a, big b ORDER BY 1"),
        # parser stressors
        ("deep_parentheses", deep),
        ("too_long", "SELECT 1" + " " * 30_000),
        ("empty", "   "),
        ("garbage", "SELEC * FORM singer"),
    ]


def test_hostile_inputs_write_nothing_and_stop_in_time(db: SafeDatabase, hostile_dir: Path) -> None:
    path = hostile_dir / "toy.sqlite"
    before_hash = file_hash(path)
    before_files = sorted(os.listdir(hostile_dir))
    before_counts = db.execute(TABLE_COUNTS).rows
    cases = _hostile(str(hostile_dir))
    assert len(cases) >= 50
    outcomes: dict[str, str] = {}
    for name, sql in cases:
        started = time.monotonic()
        try:
            result = db.execute(sql)
            outcomes[name] = f"ok rows={len(result.rows)} truncated={result.truncated}"
        except SQLError as err:
            outcomes[name] = type(err).__name__
        elapsed = time.monotonic() - started
        assert elapsed <= TIMEOUT + SLACK, f"{name} ran {elapsed:.2f}s ({outcomes[name]})"
    # nothing was written: same bytes, same rows, no new file beside the database
    assert file_hash(path) == before_hash
    assert sorted(os.listdir(hostile_dir)) == before_files
    assert db.execute(TABLE_COUNTS).rows == before_counts
    # every write, ATTACH, PRAGMA, transaction and multi-statement input was refused as unsafe
    refused = [n for n, _ in cases if outcomes[n] in ("UnsafeSQLError", "SQLParseError")]
    must_refuse = [n for n, _ in cases[: cases.index(("comment_hides_delete", "SELECT 1 /*; DELETE FROM singer */"))]]
    must_refuse += ["union_then_pragma", "nul_byte", "load_extension", "readfile", "writefile", "edit"]
    must_refuse += ["fts3_tokenizer", "fsdir", "deep_parentheses", "too_long", "empty", "garbage"]
    assert set(must_refuse) <= set(refused), {n: outcomes[n] for n in must_refuse if n not in refused}
    # the harmless ones ran; the bombs were stopped or capped
    assert outcomes["comment_hides_delete"].startswith("ok")
    assert outcomes["quoted_alias"].startswith("ok")
    for name in ("recursive_rows_forever", "cross_join_rows"):  # capped (or, on a very busy machine, stopped)
        assert outcomes[name] in ("ok rows=10000 truncated=True", "SQLTimeoutError"), (name, outcomes[name])
    for name in ("recursive_count_forever", "cross_join_count", "cross_join_sort", "recursive_fibonacci"):
        assert outcomes[name] == "SQLTimeoutError", (name, outcomes[name])
    for name in ("zeroblob_huge", "randomblob_huge", "printf_precision", "huge_like_pattern"):
        assert outcomes[name] == "SQLExecutionError", (name, outcomes[name])


def test_second_line_of_defence_without_the_sqlglot_check(
    hostile_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the AST check switched off, the authorizer and the read-only connection still refuse."""
    path = make_toy_db(tmp_path / "toy.sqlite")
    before = file_hash(path)
    monkeypatch.setattr(safe_exec, "check_sql", lambda sql, **_: None)
    attempts = [
        "INSERT INTO singer VALUES (99, 'x', 'y', 1, 'T')",
        "UPDATE singer SET age = 0",
        "DELETE FROM singer",
        "DROP TABLE singer",
        "CREATE TABLE evil (x)",
        "CREATE TEMP TABLE t (x)",
        f"ATTACH DATABASE '{tmp_path}/evil.db' AS evil",
        "PRAGMA query_only = 0",
        "PRAGMA writable_schema = 1",
        "SELECT * FROM pragma_table_info('singer')",
        "BEGIN IMMEDIATE",
        "VACUUM",
        f"VACUUM INTO '{tmp_path}/copy.db'",
        "SELECT load_extension('/tmp/evil.so')",
        "SELECT 1; DELETE FROM singer",
        "WITH x AS (SELECT 1) DELETE FROM singer",
    ]
    with SafeDatabase(path) as database:
        for sql in attempts:
            with pytest.raises((UnsafeSQLError, SQLExecutionError)):
                database.execute(sql)
        assert database.execute("SELECT count(*) FROM singer").rows == [(7,)]
    assert file_hash(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.sqlite"]


def test_result_shape_and_row_cap(tmp_path: Path) -> None:
    path = make_toy_db(tmp_path / "toy.sqlite", big_rows=50)
    result = execute_sql(path, "SELECT name, age FROM singer WHERE age > 40 ORDER BY age")
    assert isinstance(result, QueryResult)
    assert result.columns == ("name", "age")
    assert result.rows == [("Rose White", 41), ("John Nizinik", 43), ("Joe Sharp", 52)]
    assert not result.truncated and result.elapsed_s >= 0
    capped = execute_sql(path, "SELECT x FROM big", max_rows=10)
    assert capped.truncated and len(capped.rows) == 10
    exact = execute_sql(path, "SELECT x FROM big", max_rows=50)
    assert not exact.truncated and len(exact.rows) == 50
    assert execute_sql(path, "SELECT 1;  ").rows == [(1,)]
    assert execute_sql(path, "WITH a AS (SELECT 1 AS x) SELECT x FROM a UNION SELECT 2").rows == [(1,), (2,)]


def test_timeout_is_configurable(tmp_path: Path) -> None:
    path = make_toy_db(tmp_path / "toy.sqlite")
    bomb = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    started = time.monotonic()
    with pytest.raises(SQLTimeoutError) as info:
        execute_sql(path, bomb, timeout_s=0.2)
    assert time.monotonic() - started < 0.2 + SLACK
    assert info.value.timeout_s == 0.2
    assert "0.2 s" in str(info.value)


def test_a_connection_stuck_past_the_deadline_is_replaced(tmp_path: Path) -> None:
    path = make_toy_db(tmp_path / "toy.sqlite", big_rows=3000)
    with SafeDatabase(path, SafeExecConfig(timeout_s=0.3)) as database:
        started = time.monotonic()
        with pytest.raises(SQLTimeoutError):
            database.execute("SELECT randomblob(900000) FROM big a, big b ORDER BY 1")
        assert time.monotonic() - started < 0.3 + SLACK
        assert database.execute("SELECT count(*) FROM singer").rows == [(7,)]


def test_refusals_are_specific_and_are_invalid_requests(tmp_path: Path) -> None:
    path = make_toy_db(tmp_path / "toy.sqlite")
    with pytest.raises(UnsafeSQLError, match="only SELECT"):
        execute_sql(path, "DELETE FROM singer")
    with pytest.raises(SQLParseError, match="exactly one"):
        execute_sql(path, "SELECT 1; SELECT 2")
    with pytest.raises(SQLParseError, match="does not parse"):
        execute_sql(path, "SELECT FROM WHERE (")
    with pytest.raises(SQLExecutionError, match="no such column"):
        execute_sql(path, "SELECT nope FROM singer")
    with pytest.raises(DatabaseNotFoundError):
        execute_sql(tmp_path / "missing.sqlite", "SELECT 1")
    for err in (UnsafeSQLError("x"), SQLTimeoutError("x"), SQLExecutionError("x"), DatabaseNotFoundError("x")):
        assert isinstance(err, InvalidRequestError)
    assert not (tmp_path / "missing.sqlite").exists()


def test_check_sql_returns_the_ast() -> None:
    tree = check_sql("SELECT a FROM t WHERE b IN (SELECT c FROM u)")
    assert tree.key == "select"
    with pytest.raises(UnsafeSQLError, match="load_extension"):
        check_sql("SELECT upper(load_extension('x'))")


@pytest.mark.parametrize(
    "expr",
    [
        "instr('hello', 'l')",
        "instr('hello', '')",
        "instr('', 'x')",
        "instr(x'010203', x'0203')",
        "instr(12345, 34)",
        "instr(1.5, '.')",
        "instr(NULL, 'a')",
        "instr('héllo', 'l')",
        "replace('abcabc', 'b', 'XY')",
        "replace('aaa', '', 'x')",
        "replace(NULL, 'a', 'b')",
        "replace(1.5, '.', ',')",
        "replace('abc', 'b', 3)",
        "printf('%d and %s', 1, 'x')",
        "printf('%5.1f|%-4s|%%|%.*c', 2.25, 'ab', 3, 'z')",
        "printf('%q', 'it''s')",
        "format('%x', 255)",
        "printf(NULL)",
        "printf('%s')",
    ],
)
def test_safe_overrides_agree_with_sqlite(tmp_path: Path, expr: str) -> None:
    path = make_toy_db(tmp_path / "toy.sqlite")
    reference = sqlite3.connect(":memory:").execute(f"SELECT {expr}").fetchall()
    assert execute_sql(path, f"SELECT {expr}").rows == reference


ZEROBLOB_ATTACK = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 300) "
    "SELECT zeroblob(999999), zeroblob(999999), zeroblob(999999) FROM c"
)


def test_the_result_budget_holds_row_by_row(tmp_path: Path) -> None:
    """300 rows of 3 MB (900 MB) once came back whole: the budget was checked per batch and per value."""
    path = make_toy_db(tmp_path / "toy.sqlite")
    budget = SafeExecConfig().max_result_bytes
    tracemalloc.start()
    try:
        result = execute_sql(path, ZEROBLOB_ATTACK)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    returned = sum(safe_exec._row_bytes(row) for row in result.rows)
    assert result.truncated and result.truncated_reason == f"the result budget of {budget} bytes"
    assert 0 < len(result.rows) < 300 and returned <= budget
    assert returned > budget - 4_000_000  # filled up to the last row that fit (each row is ~3 MB)
    # held: the rows kept, plus one row in flight (at most the budget by the value cap, here 3 MB)
    assert peak < budget + 8_000_000, f"peak {peak / 1e6:.1f} MB for a {budget / 1e6:.1f} MB budget"


def test_a_small_budget_cuts_early_and_says_why(tmp_path: Path) -> None:
    path = make_toy_db(tmp_path / "toy.sqlite", big_rows=500)
    config = SafeExecConfig(max_result_bytes=10_000)
    result = execute_sql(path, "SELECT x, s FROM big", config=config)
    assert result.truncated and "result budget of 10000 bytes" in result.truncated_reason
    assert (
        sum(safe_exec._row_bytes(r) for r in result.rows)
        <= 10_000
        < sum(safe_exec._row_bytes(r) for r in execute_sql(path, "SELECT x, s FROM big").rows)
    )
    capped = execute_sql(path, "SELECT x FROM big", max_rows=10)
    assert capped.truncated_reason == "the row cap of 10 rows"
    assert execute_sql(path, "SELECT x FROM big").truncated_reason == ""


def test_too_many_columns_are_refused_before_running(tmp_path: Path) -> None:
    path = make_toy_db(tmp_path / "toy.sqlite")
    wide = "SELECT " + ", ".join(f"{i} AS c{i}" for i in range(300))
    with pytest.raises(SQLExecutionError, match="returns 300 columns; the limit is 256"):
        execute_sql(path, wide)
    at_limit = execute_sql(path, "SELECT " + ", ".join(f"{i}" for i in range(256)))
    assert len(at_limit.columns) == 256 and at_limit.rows[0][255] == 255
    union = "SELECT * FROM singer UNION ALL SELECT * FROM singer"  # the width comes from the compiled program
    assert len(execute_sql(path, union).columns) == len(execute_sql(path, "SELECT * FROM singer").columns)


def test_a_wide_row_of_long_values_cannot_outgrow_the_budget(tmp_path: Path) -> None:
    """A row is built whole before it can be counted: columns x value cap must fit the budget."""
    path = make_toy_db(tmp_path / "toy.sqlite")
    wide = "SELECT " + ", ".join(["zeroblob(999999)"] * 200)  # 200 MB in one row under the plain value cap
    tracemalloc.start()
    try:
        with pytest.raises(SQLExecutionError, match="longer than 167772 bytes, the most a result of 200 columns"):
            execute_sql(path, wide)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000
    assert SafeExecConfig().value_cap(200) * 200 <= SafeExecConfig().max_result_bytes
    narrow = execute_sql(path, "SELECT length(zeroblob(999999))")  # a narrow query keeps the full value cap
    assert narrow.rows == [(999999,)]
    with SafeDatabase(path) as database:  # the cap of a wide query does not stick to the connection
        with pytest.raises(SQLExecutionError):
            database.execute(wide)
        assert len(database.execute("SELECT zeroblob(999999)").rows[0][0]) == 999999
