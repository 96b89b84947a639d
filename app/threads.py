"""Where conversation threads persist: a LangGraph checkpointer chosen by the settings.

SQLite (a file in the data dir) by default; PostgreSQL when `PRUNEKIT_DATABASE_URL` is set, so several
stateless service workers can share threads. Both survive a restart of the service.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.settings import Settings

__all__ = ["open_checkpointer"]

log = logging.getLogger(__name__)


@contextmanager
def open_checkpointer(settings: Settings) -> Iterator[Any]:
    """A ready checkpointer (tables created); closed on exit."""
    if settings.database_url:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        url = settings.database_url.get_secret_value()
        # A pool, not one connection: requests run in worker threads and must not queue on one socket.
        kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
        with ConnectionPool(url, kwargs=kwargs, min_size=1, max_size=8, open=True) as pool:
            saver = PostgresSaver(pool)
            saver.setup()
            log.info("threads persist in PostgreSQL")
            yield saver
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / "threads.sqlite"
    # check_same_thread=False: requests run in a thread pool; SqliteSaver serialises access with a lock.
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        saver.setup()
        log.info("threads persist in %s", path)
        yield saver
    finally:
        conn.close()
