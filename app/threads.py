"""Where conversation threads persist, and what a thread keeps.

Storage: a LangGraph checkpointer chosen by the settings. SQLite (a file in the data dir) by default;
PostgreSQL when `PRUNEKIT_DATABASE_URL` is set, so several stateless service workers can share threads.
Both survive a restart of the service; `delete_thread` removes every checkpoint of one thread.

Content: the graphs keep `messages` in a `ThreadMessages` channel, which stores a turn only once it has
been answered (a failed turn leaves no trace) and caps what it stores (`cap_history`: the oldest turns go
first, at `MAX_THREAD_MESSAGES` messages or `MAX_THREAD_BYTES` bytes).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Self

from langgraph.channels.base import BaseChannel
from langgraph.channels.untracked_value import UntrackedValue
from langgraph.errors import EmptyChannelError

from prunekit.app.settings import Settings

__all__ = [
    "MAX_THREAD_BYTES",
    "MAX_THREAD_MESSAGES",
    "ThreadMessages",
    "cap_history",
    "commit",
    "delete_thread",
    "open_checkpointer",
    "split_turns",
]

log = logging.getLogger(__name__)

Message = dict[str, Any]

# What one thread may store. Past either, the oldest turns are dropped from storage (the system messages
# at its head stay): a conversation goes on, like a chat app's, rather than failing once it is long. The
# model never sees more than its context window anyway (`app.graphs.chat.fit_history`); the cap bounds
# the storage, which a checkpointer writes again at every step.
MAX_THREAD_MESSAGES = 200
MAX_THREAD_BYTES = 1_000_000

# LangGraph's "nothing to store" marker, as its public channels return it (it has no public name).
_NOT_STORED = UntrackedValue(object).checkpoint()


def split_turns(messages: Sequence[Mapping[str, Any]]) -> tuple[list[Message], list[list[Message]]]:
    """(the leading system messages, the turns after them, oldest first).

    A turn is a user message with what follows it up to the next one (the answer, tool messages); system
    messages sent just before a user message (clients resend their system prompt) belong to its turn.

    >>> system, turns = split_turns([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
    ...     {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}])
    >>> len(system), [len(t) for t in turns]
    (1, [2, 1])
    """
    items = [dict(m) for m in messages]
    head = 0
    while head < len(items) and items[head].get("role") == "system":
        head += 1
    turns: list[list[Message]] = []
    for i in range(head, len(items)):
        role, before = items[i].get("role"), items[i - 1].get("role") if i > head else None
        starts = not turns or (role == "user" and before != "system") or (role == "system" and before != "system")
        if starts:
            turns.append([])
        turns[-1].append(items[i])
    return items[:head], turns


def _stored_bytes(messages: Sequence[Mapping[str, Any]]) -> int:
    return sum(len(json.dumps(m, ensure_ascii=False).encode()) for m in messages)


def cap_history(messages: Sequence[Mapping[str, Any]]) -> list[Message]:
    """`messages` within `MAX_THREAD_MESSAGES` and `MAX_THREAD_BYTES`: the oldest turns dropped first.

    The leading system messages and the newest turn always stay (the request body limit bounds the latter).
    """
    system, turns = split_turns(messages)
    count = len(system) + sum(len(t) for t in turns)
    size = _stored_bytes(system) + sum(_stored_bytes(t) for t in turns)
    dropped = 0
    while len(turns) - dropped > 1 and (count > MAX_THREAD_MESSAGES or size > MAX_THREAD_BYTES):
        count -= len(turns[dropped])
        size -= _stored_bytes(turns[dropped])
        dropped += 1
    if dropped:
        log.info("thread over its cap: %d oldest turns dropped from storage", dropped)
    return system + [m for turn in turns[dropped:] for m in turn]


def commit(conversation: Sequence[Mapping[str, Any]], answer: Sequence[Mapping[str, Any]]) -> dict[str, list[Message]]:
    """The write an answering node makes to `messages`: the conversation it answered (`state["messages"]`: the
    history and this run's new messages) with `answer` after it becomes the stored thread.

    The whole conversation, not only the answer: LangGraph may apply a finished node's write to the channel as
    a checkpoint restored it (`get_state` after a stream that was closed while the node ran on), and a
    checkpoint holds no pending messages, so an answer alone would be stored without its question.
    """
    return {"commit": [dict(m) for m in (*conversation, *answer)]}


class ThreadMessages(BaseChannel[list, list | dict, list]):
    """The `messages` channel of a conversation graph: the stored history, and this run's new messages apart.

    LangGraph writes a run's input into the channels before the first node, and the checkpointer saves the
    channels after every step: with a plain `operator.add` reducer the user's message is in the thread as
    soon as a run starts, and stays there when the run then fails (a model error, a prompt too long, a client
    that hung up), so a thread grew by one unanswered message per failed try. Here a list written to the
    channel (the input) is only pending: nodes read history + pending (`get`), a checkpoint stores the
    history alone (`checkpoint`), and the answering node's `commit(conversation, answer)` replaces the
    history with the conversation it answered plus the answer, capped by `cap_history`. A run that never
    reaches that write leaves the stored thread as it was.

    Use it as the annotation of a state key: `messages: Annotated[list[dict[str, str]], ThreadMessages()]`.
    """

    __slots__ = ("history", "pending")

    def __init__(self, typ: Any = list, key: str = "") -> None:
        super().__init__(typ, key)
        self.history: list[Message] = []
        self.pending: list[Message] = []

    def __eq__(self, other: object) -> bool:  # LangGraph compares channel specs when it merges schemas
        return isinstance(other, ThreadMessages)

    @property
    def ValueType(self) -> Any:
        return list

    @property
    def UpdateType(self) -> Any:
        return list | dict

    def copy(self) -> Self:
        new = self.__class__(self.typ, self.key)
        new.history, new.pending = list(self.history), list(self.pending)
        return new

    def from_checkpoint(self, checkpoint: Any) -> Self:
        new = self.__class__(self.typ, self.key)
        new.history = [dict(m) for m in checkpoint] if isinstance(checkpoint, list) else []
        return new

    def checkpoint(self) -> Any:
        return list(self.history) if self.history else _NOT_STORED  # a thread with no answered turn is not stored

    def get(self) -> list[Message]:
        if not self.is_available():  # absent, not []: a thread with no answered turn shows no values (a 404)
            raise EmptyChannelError()
        return self.history + self.pending

    def is_available(self) -> bool:
        return bool(self.history or self.pending)

    def update(self, values: Sequence[Any]) -> bool:
        for value in values:
            if isinstance(value, Mapping) and "commit" in value:
                self.history = cap_history(value["commit"])
                self.pending = []
            else:
                self.pending.extend(dict(m) for m in value)
        return bool(values)


def delete_thread(graph: Any, config: Mapping[str, Any]) -> bool:
    """Delete every checkpoint of the thread `config` names from `graph`'s checkpointer.

    Returns False when it held no conversation (what GET /v1/threads/{id} answers with a 404); whatever was
    stored under the id (an empty checkpoint a failed first turn left) is removed either way.
    """
    existed = bool(graph.get_state(config).values)
    graph.checkpointer.delete_thread(config["configurable"]["thread_id"])
    return existed


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
