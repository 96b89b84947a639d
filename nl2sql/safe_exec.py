"""Run untrusted SQL (an LLM's, a user's) on a SQLite database without letting it write, escape or hang.

Defences, each independent of the others:

1. Text checks before anything runs: a length cap, then sqlglot must parse it into exactly one
   statement whose root is a SELECT, a set operation (UNION/INTERSECT/EXCEPT) or a parenthesised query,
   with no DML/DDL/PRAGMA/ATTACH/transaction node anywhere (`WITH x AS (DELETE ...)` is refused too)
   and no call to a dangerous function (`load_extension`, `readfile`, `writefile`, ...).
2. The connection is read-only at the file level (`file:PATH?mode=ro`, `uri=True`), with
   `PRAGMA query_only`, no attached databases allowed (`SQLITE_LIMIT_ATTACHED = 0`), extension loading
   off, and caps on value size and LIKE-pattern length (`zeroblob(1e9)` fails at once).
3. An authorizer allows only SELECT, reads, function calls (minus the dangerous ones) and recursive
   CTEs; SQLite asks it for every table, column and function of the compiled statement.
4. A progress handler interrupts the query when its deadline passes (default 5 s); fetching stops at a
   row cap and a byte budget, and the result says it was truncated and why. The budget holds row by row:
   rows are fetched one at a time and each is counted at once, so the rows held never pass it. One row
   is bounded too: the statement's result columns are counted before it runs (from its `EXPLAIN`
   program, which compiles but runs nothing), more than `max_columns` is refused, and the value cap of
   this query is lowered to `budget // columns`, so no single row SQLite builds can outgrow the budget.
5. Time is bounded even inside one long SQLite operation: the built-ins that can spin inside a single
   call (`instr`, `replace`, `printf`/`format`) are replaced by bounded versions, and the query runs in
   a worker thread the caller stops waiting for at the deadline plus a short grace (the stuck
   connection is interrupted and abandoned; the next query opens a fresh one).

>>> import sqlite3, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "t.sqlite")
>>> with sqlite3.connect(path) as c: _ = c.execute("CREATE TABLE t (x INTEGER)")
>>> execute_sql(path, "SELECT 1 + 1 AS two").rows
[(2,)]
"""

from __future__ import annotations

import logging
import re
import sqlite3
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlglot import exp

from prunekit.decoding.errors import InvalidRequestError
from prunekit.nl2sql.errors import (
    DatabaseNotFoundError,
    SQLExecutionError,
    SQLTimeoutError,
    UnsafeSQLError,
)
from prunekit.nl2sql.sqlast import parse_sql, unwrap_query

__all__ = [
    "DENIED_FUNCTIONS",
    "QueryResult",
    "SafeDatabase",
    "SafeExecConfig",
    "check_sql",
    "execute_sql",
]

log = logging.getLogger(__name__)

# Functions that touch the file system, load code or poke at internals; refused by name.
DENIED_FUNCTIONS = frozenset(
    {
        "load_extension",
        "readfile",
        "writefile",
        "edit",
        "fts3_tokenizer",
        "fsdir",
        "zipfile",
        "sqlar_compress",
        "sqlar_uncompress",
        "lsmode",
        "sqlite_dbpage",
        "sqlite_dbdata",
        "sqlite_dbptr",
        "shell_add_schema",
        "shell_module_schema",
        "shell_escape_crnl",
        "shell_idquote",
        "shell_putsnl",
        "eval",
    }
)

# sqlglot node types that never belong in a read-only query.
_FORBIDDEN_NAMES = (  # noqa: SIM905
    "DML Insert Update Delete Merge DDL Create Drop Alter Command Pragma Attach Detach Transaction Commit Rollback "
    "Into Analyze Set Use Copy LoadData TruncateTable Cache Uncache Refresh Kill Grant Describe Summarize Values"
).split()
_FORBIDDEN_NODES: tuple[type[exp.Expression], ...] = tuple(
    t for t in (getattr(exp, name, None) for name in _FORBIDDEN_NAMES) if isinstance(t, type)
)

# SQLite authorizer action codes (stable across versions; the module lacks some names on old Pythons).
_SQLITE_READ = getattr(sqlite3, "SQLITE_READ", 20)
_SQLITE_SELECT = getattr(sqlite3, "SQLITE_SELECT", 21)
_SQLITE_FUNCTION = getattr(sqlite3, "SQLITE_FUNCTION", 31)
_SQLITE_RECURSIVE = getattr(sqlite3, "SQLITE_RECURSIVE", 33)
_ALLOWED_ACTIONS = frozenset({_SQLITE_READ, _SQLITE_SELECT, _SQLITE_FUNCTION, _SQLITE_RECURSIVE})
_ACTION_NAMES = {
    getattr(sqlite3, n): n for n in dir(sqlite3) if n.startswith("SQLITE_") and isinstance(getattr(sqlite3, n), int)
}


@dataclass(frozen=True)
class SafeExecConfig:
    """Limits of one execution. The defaults suit interactive NL2SQL on Spider-sized databases."""

    timeout_s: float = 5.0  # wall-clock budget for running and fetching
    max_rows: int = 10_000  # rows returned; more are cut and `truncated` is set
    max_result_bytes: int = 32 * 1024 * 1024  # Python memory of the rows returned (`_row_bytes`); more are cut
    max_columns: int = 256  # result columns; a wider query is refused (a row is at most columns x value cap)
    max_sql_chars: int = 20_000  # longer text is refused before parsing
    max_value_bytes: int = 1_000_000  # SQLITE_LIMIT_LENGTH: largest string/blob SQLite may build (see `value_cap`)
    max_like_pattern: int = 1_000  # SQLITE_LIMIT_LIKE_PATTERN_LENGTH
    progress_every: int = 1_000  # VM instructions between deadline checks

    def value_cap(self, columns: int) -> int:
        """The value cap of a query with `columns` result columns: `columns` values of this size fit the budget.

        A row is built whole, by SQLite and then by Python, before it can be counted; bounding each of its
        values by `budget // columns` bounds the row by the budget. Narrow queries keep `max_value_bytes`.

        >>> SafeExecConfig().value_cap(3), SafeExecConfig().value_cap(256)
        (1000000, 131072)
        """
        return max(1, min(self.max_value_bytes, self.max_result_bytes // max(columns, 1)))


@dataclass(frozen=True)
class QueryResult:
    """What a query returned: column names, rows (at most the caps), whether rows were cut and why, and time."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    truncated: bool = False
    elapsed_s: float = 0.0
    truncated_reason: str = ""  # e.g. "the row cap of 10000 rows"; empty when nothing was cut


def _decode_text(data: bytes) -> str:
    # Spider's databases hold some text that is not UTF-8; never fail a query on it.
    return data.decode("utf-8", errors="replace")


def _function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return (node.sql_name() if isinstance(node, exp.Func) else "").lower()


def check_sql(sql: str, *, max_sql_chars: int = SafeExecConfig.max_sql_chars) -> exp.Expression:
    """Refuse anything but one read-only query; return its sqlglot AST.

    Raises `UnsafeSQLError` (or its subclass `SQLParseError`) saying why.

    >>> check_sql("SELECT 1").sql()
    'SELECT 1'
    >>> check_sql("DELETE FROM t")
    Traceback (most recent call last):
    ...
    prunekit.nl2sql.errors.UnsafeSQLError: only SELECT queries are allowed, got DELETE
    """
    if not isinstance(sql, str):
        raise UnsafeSQLError(f"SQL must be a string, got {type(sql).__name__}")
    if not sql.strip():
        raise UnsafeSQLError("the SQL is empty")
    if len(sql) > max_sql_chars:
        raise UnsafeSQLError(f"the SQL is {len(sql)} characters long; the limit is {max_sql_chars}", sql)
    if "\x00" in sql:
        raise UnsafeSQLError("the SQL contains a NUL character", sql)
    tree = parse_sql(sql)
    root = unwrap_query(tree)
    if not isinstance(root, (exp.Select, exp.SetOperation)):
        words = re.findall(r"[A-Za-z_]+", re.sub(r"/\*.*?\*/|--[^\n]*", " ", sql, flags=re.DOTALL))
        statement = isinstance(tree, _FORBIDDEN_NODES) and not isinstance(tree, exp.Command)
        kind = tree.key.upper() if statement or not words else words[0].upper()
        raise UnsafeSQLError(f"only SELECT queries are allowed, got {kind}", sql)
    for node in tree.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            raise UnsafeSQLError(f"{node.key.upper()} is not allowed inside a query", sql)
        if isinstance(node, exp.Func) and _function_name(node) in DENIED_FUNCTIONS:
            raise UnsafeSQLError(f"the function {_function_name(node)}() is not allowed", sql)
        if isinstance(node, exp.Table) and node.name.lower() in DENIED_FUNCTIONS:
            raise UnsafeSQLError(f"the table-valued function {node.name.lower()} is not allowed", sql)
    return tree


def _readonly_uri(path: Path) -> str:
    return f"file:{urllib.parse.quote(str(path))}?mode=ro"


@dataclass
class _Guard:
    """State shared with the SQLite callbacks of one connection."""

    deadline: float = float("inf")
    timed_out: bool = False
    denied: list[str] = field(default_factory=list)


_PRINTF_SPEC = re.compile(r"%([-+ 0#,!]*)(\*|\d+)?(?:\.(\*|\d*))?(?:l{0,2})([a-zA-Z%])")


class _Overrides:
    """Safe stand-ins for the built-in functions that can burn CPU inside one call.

    SQLite checks the progress handler between VM instructions, not inside a function: `instr` and
    `replace` are quadratic in the worst case (a 1 MB haystack and a 0.5 MB near-miss needle take
    seconds), and `printf('%.*c', 2000000000, 'x')` loops two billion times before it gives up.
    `instr`/`replace` are reimplemented over Python's linear-time string search; `printf`/`format`
    refuse a width or precision above the value cap and then call the real function on a private
    in-memory connection.
    """

    def __init__(self, max_value_bytes: int) -> None:
        self.max_value_bytes = max_value_bytes
        self.last_error = ""
        self.helper = sqlite3.connect(":memory:", check_same_thread=False)
        self.helper.text_factory = _decode_text
        if hasattr(self.helper, "setlimit"):
            self.helper.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_value_bytes)

    def install(self, conn: sqlite3.Connection) -> None:
        conn.create_function("instr", 2, self.instr, deterministic=True)
        conn.create_function("replace", 3, self.replace, deterministic=True)
        conn.create_function("printf", -1, self.printf, deterministic=True)
        conn.create_function("format", -1, self.printf, deterministic=True)

    def close(self) -> None:
        self.helper.close()

    def _fail(self, message: str) -> ValueError:
        self.last_error = message  # SQLite only says "user-defined function raised exception"
        return ValueError(message)

    def _text(self, value: Any) -> str | bytes:
        if isinstance(value, (str, bytes)):
            return value
        return self.helper.execute("SELECT CAST(? AS TEXT)", (value,)).fetchone()[0]  # SQLite's number format

    def instr(self, haystack: Any, needle: Any) -> int | None:
        if haystack is None or needle is None:
            return None
        h, n = self._text(haystack), self._text(needle)
        if isinstance(h, bytes) and isinstance(n, bytes):
            return h.find(n) + 1
        h = h.decode("utf-8", "replace") if isinstance(h, bytes) else h
        n = n.decode("utf-8", "replace") if isinstance(n, bytes) else n
        return h.find(n) + 1

    def replace(self, text: Any, old: Any, new: Any) -> str | None:
        if text is None or old is None or new is None:
            return None
        parts = [self._text(v) for v in (text, old, new)]
        x, y, z = (p.decode("utf-8", "replace") if isinstance(p, bytes) else p for p in parts)
        if not y:
            return x
        if len(x) // len(y) * len(z) > self.max_value_bytes:
            raise self._fail("replace() would build a string past the value cap")
        return x.replace(y, z)

    def printf(self, *args: Any) -> Any:
        if not args or args[0] is None:
            return None
        fmt = self._text(args[0])
        fmt = fmt.decode("utf-8", "replace") if isinstance(fmt, bytes) else fmt
        i = 1
        for match in _PRINTF_SPEC.finditer(fmt):
            for part in (match.group(2), match.group(3)):
                if part == "*":
                    value = args[i] if i < len(args) else 0
                    i += 1
                    try:
                        size = abs(int(value or 0))
                    except (TypeError, ValueError):
                        size = 0
                else:
                    size = int(part) if part else 0
                if size > self.max_value_bytes:
                    raise self._fail(f"printf() width or precision {size} is past the value cap")
            if match.group(4) != "%":
                i += 1
        placeholders = ",".join("?" * len(args))
        return self.helper.execute(f"SELECT printf({placeholders})", args).fetchone()[0]


class SafeDatabase:
    """A read-only, guarded connection to one SQLite file; reuse it for many queries.

    Each query runs in a worker thread; the caller waits at most the timeout plus `grace_s`. The
    progress handler stops almost every query on time; when one is stuck inside a single SQLite
    operation (a big sort), the caller gets `SQLTimeoutError` at the hard deadline anyway, the
    connection is interrupted and abandoned (the worker closes it when SQLite returns), and the next
    query opens a fresh one.

    >>> import sqlite3, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.sqlite")
    >>> with sqlite3.connect(path) as c: _ = c.execute("CREATE TABLE t (x INTEGER)")
    >>> with SafeDatabase(path) as db:
    ...     db.execute("SELECT count(*) FROM t").rows
    [(0,)]
    """

    grace_s = 0.25

    def __init__(self, path: str | Path, config: SafeExecConfig | None = None) -> None:
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_file():
            raise DatabaseNotFoundError(f"no SQLite database at {self.path}")
        self.config = config or SafeExecConfig()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._guard = _Guard()
        self._overrides: _Overrides | None = None
        self._open()

    def _open(self) -> None:
        cfg = self.config
        try:
            conn = sqlite3.connect(_readonly_uri(self.path), uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as err:
            raise DatabaseNotFoundError(f"cannot open {self.path} read-only: {err}") from err
        conn.text_factory = _decode_text
        conn.execute("PRAGMA query_only = ON")  # before the authorizer, which denies every PRAGMA
        if hasattr(conn, "setlimit"):  # Python >= 3.11
            conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, cfg.max_value_bytes)
            conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, cfg.max_like_pattern)
            conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, max(cfg.max_sql_chars * 4, 1000))
        overrides = _Overrides(cfg.max_value_bytes)
        overrides.install(conn)
        guard = _Guard()

        def authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
            if action not in _ALLOWED_ACTIONS:
                guard.denied.append(f"{_ACTION_NAMES.get(action, action)}({arg1 or ''})")
                return sqlite3.SQLITE_DENY
            if action == _SQLITE_FUNCTION and (arg2 or "").lower() in DENIED_FUNCTIONS:
                guard.denied.append(f"function {arg2}")
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK

        def progress() -> int:
            if time.monotonic() > guard.deadline:
                guard.timed_out = True
                return 1  # non-zero interrupts the statement
            return 0

        conn.set_authorizer(authorizer)
        conn.set_progress_handler(progress, cfg.progress_every)
        self._conn, self._guard, self._overrides = conn, guard, overrides

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._overrides is not None:
                self._overrides.close()
                self._overrides = None

    def __enter__(self) -> SafeDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, sql: str, *, timeout_s: float | None = None, max_rows: int | None = None) -> QueryResult:
        """Check and run one query; see the module docstring for the guarantees.

        Raises `UnsafeSQLError` (refused before or by SQLite's authorizer), `SQLTimeoutError` (deadline
        passed), `SQLExecutionError` (SQLite failed the query).
        """
        cfg = self.config
        timeout = cfg.timeout_s if timeout_s is None else float(timeout_s)
        cap = cfg.max_rows if max_rows is None else max_rows
        if timeout <= 0 or cap < 0:
            raise InvalidRequestError("timeout_s must be > 0 and max_rows >= 0")
        started = time.monotonic()
        check_sql(sql, max_sql_chars=cfg.max_sql_chars)
        text = sql.strip().rstrip(";").strip()
        with self._lock:  # one query at a time on this connection
            if self._conn is None:
                self._open()
            conn, guard, overrides = self._conn, self._guard, self._overrides
            assert conn is not None and overrides is not None
            guard.deadline = started + timeout
            guard.timed_out = False
            guard.denied.clear()
            overrides.last_error = ""
            box: dict[str, Any] = {}
            abandoned = threading.Event()

            def work() -> None:
                try:
                    box["result"] = self._run(conn, text, cap)
                except BaseException as err:  # handed to the caller's thread
                    box["error"] = err
                finally:
                    if abandoned.is_set():
                        conn.close()
                        overrides.close()

            worker = threading.Thread(target=work, name="nl2sql-safe-exec", daemon=True)
            worker.start()
            worker.join(timeout + self.grace_s)
            if worker.is_alive():
                abandoned.set()
                guard.timed_out = True
                conn.interrupt()
                self._conn = self._overrides = None  # the worker closes them when SQLite lets go
                log.warning("query stuck past its hard deadline; connection abandoned: %.80s", text)
                raise SQLTimeoutError(f"the query ran past its {timeout:g} s budget and was stopped", sql, timeout)
            guard.deadline = float("inf")
            err = box.get("error")
            if isinstance(err, (sqlite3.Error, sqlite3.Warning)):
                # translated under the lock: the next query on this connection clears the guard's record
                raise self._translate(err, guard.timed_out, guard.denied, overrides.last_error, sql, timeout) from err
        if "error" in box:
            raise box["error"]
        columns, rows, reason = box["result"]
        return QueryResult(
            columns=columns,
            rows=rows,
            truncated=bool(reason),
            elapsed_s=time.monotonic() - started,
            truncated_reason=reason,
        )

    def _run(self, conn: sqlite3.Connection, text: str, cap: int) -> tuple[tuple[str, ...], list[tuple[Any, ...]], str]:
        """Run `text` under a value cap fitted to its width; fetch within the caps. Returns (columns, rows, reason)."""
        cfg = self.config
        width = _result_width(conn, text)
        _check_width(width, cfg.max_columns, text)
        # The wider the result, the shorter a value may be; restored after, so the next query starts from the config.
        value_cap = cfg.value_cap(width or cfg.max_columns)
        _set_value_cap(conn, value_cap)
        cursor = conn.cursor()
        try:
            cursor.execute(text)  # runs up to the first row
            columns = tuple(d[0] for d in cursor.description or ())
            _check_width(len(columns), cfg.max_columns, text)  # in case EXPLAIN's count missed (an unusual build)
            rows, reason = _fetch_within(cursor, cap, cfg.max_result_bytes)
        except sqlite3.DataError as err:
            if "too big" not in str(err):
                raise
            raise SQLExecutionError(
                f"a value is longer than {value_cap} bytes, the most a result of {width or cfg.max_columns} "
                f"columns may hold ({cfg.max_result_bytes} bytes shared by the columns, at most {cfg.max_value_bytes} "
                "each): select fewer or shorter values",
                text,
            ) from err
        finally:
            cursor.close()
            _set_value_cap(conn, cfg.max_value_bytes)
        return columns, rows, reason

    @staticmethod
    def _translate(
        err: Exception, timed_out: bool, denied: Sequence[str], function_error: str, sql: str, timeout: float
    ) -> Exception:
        if timed_out:
            return SQLTimeoutError(f"the query ran past its {timeout:g} s budget and was stopped", sql, timeout)
        if denied:
            return UnsafeSQLError(f"not allowed by the read-only policy: {', '.join(denied[:3])}", sql)
        if isinstance(err, (sqlite3.Warning, sqlite3.ProgrammingError)) and "one statement" in str(err):
            return UnsafeSQLError(f"SQLite refused the SQL: {err}", sql)
        if function_error:
            return SQLExecutionError(f"SQLite error: {function_error}", sql)
        return SQLExecutionError(f"SQLite error: {err}", sql)


def _check_width(width: int, limit: int, sql: str) -> None:
    if width > limit:
        raise SQLExecutionError(
            f"the query returns {width} columns; the limit is {limit}: select only the ones you need", sql
        )


def _result_width(conn: sqlite3.Connection, text: str) -> int:
    """How many columns `text` returns, read from its compiled program without running it.

    `EXPLAIN` compiles the statement (the authorizer and every limit apply) and lists its VM program; the
    `ResultRow` instruction's p2 is the row's width. 0 when no ResultRow shows (the caller assumes the widest).
    """
    program = conn.execute(f"EXPLAIN {text}\n").fetchall()  # (addr, opcode, p1, p2, p3, p4, p5, comment)
    return max((int(op[3]) for op in program if op[1] == "ResultRow"), default=0)


def _set_value_cap(conn: sqlite3.Connection, limit: int) -> None:
    if hasattr(conn, "setlimit"):  # Python >= 3.11
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)


def _fetch_within(cursor: sqlite3.Cursor, cap: int, budget: int) -> tuple[list[tuple[Any, ...]], str]:
    """Fetch at most `cap` rows whose `_row_bytes` sum to at most `budget`; say why when rows were left.

    One row at a time, counted at once: the memory held is the rows kept plus one row, never a batch
    of rows past the budget. A row that would pass the budget is dropped, not kept.
    """
    rows: list[tuple[Any, ...]] = []
    used = 0
    while (row := cursor.fetchone()) is not None:
        if len(rows) == cap:
            return rows, f"the row cap of {cap} rows"
        used += _row_bytes(row)
        if used > budget:
            return rows, f"the result budget of {budget} bytes"
        rows.append(row)
    return rows, ""


def _row_bytes(row: Sequence[Any]) -> int:
    """Python memory of one fetched row: the tuple and its values (shared small ints counted too: an upper bound)."""
    return sys.getsizeof(row) + sum(sys.getsizeof(v) for v in row)


def execute_sql(
    db_path: str | Path,
    sql: str,
    *,
    timeout_s: float | None = None,
    max_rows: int | None = None,
    config: SafeExecConfig | None = None,
) -> QueryResult:
    """Open `db_path` read-only, run one checked query under the limits, close; see `SafeDatabase`."""
    with SafeDatabase(db_path, config) as db:
        return db.execute(sql, timeout_s=timeout_s, max_rows=max_rows)
