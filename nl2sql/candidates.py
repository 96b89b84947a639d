"""Candidate queries: running them safely, and choosing the one to answer with by agreement of results.

The agent writes several candidate queries for one question (a draft, the decomposition's final query, a
query prompted with re-ranked demonstrations, repairs). Each runs through `safe_exec` (read-only, one
SELECT, a timeout, a row cap); the answer is the candidate whose result most candidates agree on
(self-consistency by execution result), non-empty results first, ties to the earlier candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunekit.nl2sql.errors import SQLError, SQLTimeoutError
from prunekit.nl2sql.safe_exec import SafeDatabase, SafeExecConfig

__all__ = ["MAX_ROWS", "Candidate", "choose_candidate", "execute_candidates", "result_signature"]

MAX_ROWS = 10_000  # rows a candidate's result keeps: enough to compare results, bounded for any query


@dataclass
class Candidate:
    """A candidate query and what executing it gave."""

    source: str
    sql: str
    status: str = "pending"  # "ok", "empty", "error", "pending"
    error: str | None = None
    columns: tuple[str, ...] = ()
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    truncated_reason: str = ""  # why safe execution cut the rows (row cap, byte budget); empty when nothing was

    def summary(self) -> dict[str, Any]:
        """What a result reports of the candidate: its source, SQL, status, error and row count."""
        return {
            "source": self.source,
            "sql": self.sql,
            "status": self.status,
            "error": self.error,
            "rows": len(self.rows),
        }


def execute_candidates(db_path: str | Path, candidates: Sequence[Candidate], timeout_s: float) -> None:
    """Run the pending candidates on the database, in place: each gets its rows ("ok", "empty") or its error.

    >>> import sqlite3, tempfile
    >>> db = Path(tempfile.mkdtemp()) / "t.sqlite"
    >>> with sqlite3.connect(db) as c:
    ...     _ = c.executescript("CREATE TABLE t (x INT); INSERT INTO t VALUES (1)")
    >>> good, bad = Candidate("draft", "SELECT x FROM t"), Candidate("repair", "SELECT y FROM t")
    >>> execute_candidates(db, [good, bad], timeout_s=5.0)
    >>> good.status, good.rows, bad.status, bad.error
    ('ok', [(1,)], 'error', 'SQLite error: no such column: y')
    """
    pending = [c for c in candidates if c.status == "pending"]
    if not pending:
        return
    with SafeDatabase(db_path, SafeExecConfig(timeout_s=timeout_s, max_rows=MAX_ROWS)) as db:
        for c in pending:
            try:
                result = db.execute(c.sql)
            except SQLTimeoutError as err:
                c.status, c.error = "error", f"timeout: {err}"
            except SQLError as err:
                c.status, c.error = "error", str(err)
            else:
                c.columns, c.rows, c.truncated_reason = result.columns, list(result.rows), result.truncated_reason
                c.status = "ok" if result.rows else "empty"


def result_signature(rows: Sequence[Sequence[Any]]) -> tuple[Any, ...]:
    """An order-free signature of a result: the sorted bag of rows, each row's values sorted.

    Two candidates agree when their signatures are equal (row order and column order ignored, as in
    Spider's execution match without ORDER BY).

    >>> result_signature([(1, "a"), (2, "b")]) == result_signature([("b", 2), ("a", 1.0)])
    True
    """

    def key(v: Any) -> tuple[int, str]:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        return (0, repr(v)) if v is None else (1, f"{type(v).__name__}:{v!r}")

    return tuple(sorted(tuple(sorted(key(v) for v in row)) for row in rows))


def choose_candidate(candidates: Sequence[Candidate]) -> int:
    """Index of the candidate to answer with: the largest group of candidates agreeing on a non-empty
    result, then the largest agreeing on an empty result, then the first candidate; ties go to the
    group whose first member comes earliest."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    for status in ("ok", "empty"):
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, c in enumerate(candidates):
            if c.status == status:
                groups.setdefault(result_signature(c.rows), []).append(i)
        if groups:
            best = max(groups.values(), key=lambda members: (len(members), -members[0]))
            return best[0]
    return 0
