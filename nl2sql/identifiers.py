"""Identifier repair: a query that names a table or column the database lacks, mapped to the nearest real name.

A weak model often writes `singers` for `singer` or `nme` for `name`. SQLite's error names the unknown
identifier ("no such column: nme"); replacing it with the closest real name fixes the query without an LLM
call, so the agent tries this before asking the model to rewrite the query.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection

from prunekit.nl2sql.candidates import Candidate
from prunekit.nl2sql.schema import Schema

__all__ = ["MAX_FIXES", "fix_identifiers", "repair_identifiers"]

MAX_FIXES = 4  # unknown names fixed in a row, each against a fresh error
_NO_SUCH = re.compile(r"no such (column|table): ([\w.]+)", re.IGNORECASE)


def fix_identifiers(sql: str, error: str, schema: Schema) -> str | None:
    """Map an identifier SQLite does not know (from the error message) to the nearest real one.

    Returns the rewritten SQL, or None when the error is not about a missing name or nothing is close.

    >>> from prunekit.nl2sql.schema import Column, Table
    >>> s = Schema("t", (Table("singer", (Column("name"), Column("age"))),))
    >>> fix_identifiers("SELECT nme FROM singer", "no such column: nme", s)
    'SELECT name FROM singer'
    """
    m = _NO_SUCH.search(error or "")
    if not m:
        return None
    kind, name = m.group(1).lower(), m.group(2)
    bare = name.split(".")[-1]
    if kind == "table":
        pool = [t.name for t in schema.tables]
    else:
        pool = sorted({c.name for t in schema.tables for c in t.columns})
    lowered = {p.lower(): p for p in pool}
    # any real name beats one that cannot run: a low similarity cutoff, then shared words
    close = difflib.get_close_matches(bare.lower(), list(lowered), n=1, cutoff=0.4)
    if not close:
        # a column named after its table ("singer_name" for "name") or the reverse
        parts = [p for p in re.split(r"[_\W]+", bare.lower()) if len(p) > 1]
        scored = [(sum(part in key for part in parts), key) for key in lowered]
        scored = [s for s in scored if s[0] > 0]
        close = [max(scored)[1]] if scored else []
    if not close or lowered[close[0]].lower() == bare.lower():
        return None
    replacement = lowered[close[0]]
    pattern = re.compile(r"(?<![\w'])" + re.escape(bare) + r"(?![\w'])", re.IGNORECASE)
    fixed = pattern.sub(replacement, sql)
    return fixed if fixed != sql else None


def repair_identifiers(
    failed: Candidate,
    schema: Schema,
    seen: Collection[str],
    execute: Callable[[list[Candidate]], None],
) -> tuple[Candidate | None, str]:
    """Fix a failed candidate's unknown names one by one, running each fix (`execute`) to get the next error.

    Returns the first fix that runs (source `<source>+fix`), or None when no fix runs or a fix repeats a query
    in `seen`; and the error the last try gave (the failed candidate's own when no fix was tried), which is
    what a model asked to rewrite the query should see.
    """
    sql, error = failed.sql, failed.error or ""
    for _ in range(MAX_FIXES):
        attempt = fix_identifiers(sql, error, schema)
        if attempt is None or attempt in seen:
            break
        probe = Candidate(failed.source + "+fix", attempt)
        execute([probe])
        if probe.status != "error":
            return probe, error
        sql, error = attempt, probe.error or ""
    return None, error
