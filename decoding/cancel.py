"""Cancelling a request's work from outside the threads that do it.

A service request runs in worker threads (the router graph, LangGraph's parallel nodes, the llama.cpp scheduler);
when its client hangs up, or the server shuts down, that work must stop within a second and free what it holds
(a decoding slot above all). Python cannot stop a thread, so the work stops itself: the service makes a
`CancelToken` for the request and runs the work under `cancellable(token)`; the token travels as a context
variable, which `asyncio`, anyio's worker threads and LangGraph's executors all copy into the threads they start,
so code deep down (a backend's token loop, the pruner's batch loop) finds it with `check_cancelled()` and raises
`RequestCancelledError` there. Code run outside a request has no token and is never cancelled.

>>> token = CancelToken()
>>> with cancellable(token):
...     check_cancelled()  # still running
...     token.cancel("client disconnected")
...     check_cancelled()
Traceback (most recent call last):
    ...
prunekit.decoding.cancel.RequestCancelledError: request cancelled: client disconnected
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from prunekit.decoding.errors import PrunekitError

__all__ = ["CancelToken", "RequestCancelledError", "cancellable", "check_cancelled", "current_token"]


class RequestCancelledError(PrunekitError):
    """The request's work was cancelled (its client went away, or the server is shutting down)."""


class CancelToken:
    """A flag the service sets once; thread-safe. Callbacks registered with `on_cancel` run at `cancel()`
    (e.g. to kill a sandboxed process that is not polling)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self.reason = ""

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self, reason: str = "cancelled") -> None:
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run `callback` at cancellation (at once if already cancelled); returns a function that unregisters it."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return lambda: self._forget(callback)
        callback()
        return lambda: None

    def _forget(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or `timeout` seconds; True when cancelled."""
        return self._event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise RequestCancelledError(f"request cancelled: {self.reason}")


_CURRENT: ContextVar[CancelToken | None] = ContextVar("prunekit_cancel_token", default=None)


def current_token() -> CancelToken | None:
    """The token of the request this code runs for, or None outside a request."""
    return _CURRENT.get()


def check_cancelled() -> None:
    """Raise `RequestCancelledError` when the current request has been cancelled; cheap enough for a token loop."""
    token = _CURRENT.get()
    if token is not None:
        token.raise_if_cancelled()


@contextmanager
def cancellable(token: CancelToken) -> Iterator[CancelToken]:
    """Run the block (and every thread it starts that copies the context) under `token`."""
    reset = _CURRENT.set(token)
    try:
        yield token
    finally:
        _CURRENT.reset(reset)
