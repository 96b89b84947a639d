"""Exceptions of the NL2SQL core. Each says what was refused and what to change.

The refusals of untrusted SQL (unsafe, too slow, failing) are the caller's fault, so they subclass
`decoding.errors.InvalidRequestError` (HTTP 400 at the service).
"""

from __future__ import annotations

from prunekit.decoding.errors import InvalidRequestError, PrunekitError

__all__ = [
    "DatabaseNotFoundError",
    "NL2SQLError",
    "SQLError",
    "SQLExecutionError",
    "SQLParseError",
    "SQLTimeoutError",
    "UnsafeSQLError",
]


class NL2SQLError(PrunekitError):
    """Base of the errors raised on purpose by `nl2sql`."""


class SQLError(NL2SQLError, InvalidRequestError):
    """Untrusted SQL was refused or failed; `sql` holds the offending text (truncated)."""

    def __init__(self, message: str, sql: str = "") -> None:
        super().__init__(message)
        self.sql = sql[:500]


class UnsafeSQLError(SQLError):
    """The SQL is not a single read-only query (a write, ATTACH, PRAGMA, several statements...)."""


class SQLParseError(UnsafeSQLError):
    """The SQL does not parse, so it cannot be checked and is refused."""


class SQLTimeoutError(SQLError):
    """The query ran past its time budget and was interrupted."""

    def __init__(self, message: str, sql: str = "", timeout_s: float = 0.0) -> None:
        super().__init__(message, sql)
        self.timeout_s = timeout_s


class SQLExecutionError(SQLError):
    """SQLite refused or failed the query (unknown column, type error, value too big...)."""


class DatabaseNotFoundError(NL2SQLError, InvalidRequestError):
    """The database file does not exist, is not a file, or is not a readable SQLite database."""
