"""Admission control and cancellation: every request's place and work are bounded, and a hang-up frees them.

- **Admission.** Each route (a chat model, `/v1/prune`, `/v1/sql`, `/v1/agents`) runs at most `limit` requests at
  once; up to `max_waiting` more wait for a place, each at most `wait_s` seconds. Past that the service answers
  503 with `Retry-After` at once, in OpenAI's error JSON, instead of queueing without bound: a client sees "busy,
  come back in N s" rather than a timeout, and the service is back to full speed as soon as the burst ends.
- **Cancellation.** A request's blocking work runs in a worker thread under a `CancelToken`
  (`decoding.cancel`). While it runs, the handler also waits for the client's `http.disconnect`; a hang-up
  cancels the token, the work stops at its next check (a decoding step, a pruner batch) and the place is given
  back once the thread has let go of the model. Streams cancel the same token when the response is torn down.
- **Shutdown.** `cancel_all` cancels every request in flight, so `SIGTERM` ends the server promptly under load.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from prunekit.app.api.errors import ApiError
from prunekit.decoding.cancel import CancelToken, RequestCancelledError, cancellable

__all__ = [
    "Admission",
    "ClientGoneError",
    "Ticket",
    "run_cancellable",
    "settle",
    "until_done_or_gone",
    "wait_for_disconnect",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a hung-up request may keep its place while its thread winds down; every step it can be in is bounded
# (a decoding step, a pruner batch, a SQL statement's timeout), so this is only a last resort.
_RELEASE_GRACE_S = 30.0


class ClientGoneError(Exception):
    """The client hung up before the answer was ready; there is nobody to answer."""


@dataclass
class _Gate:
    """One route's places: a semaphore, the number waiting for it, recent service times (for Retry-After)."""

    limit: int
    semaphore: asyncio.Semaphore
    waiting: int = 0
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=32))

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the mean service time times the queue ahead, per place."""
        mean = sum(self.durations) / len(self.durations) if self.durations else 1.0
        return max(1, min(60, math.ceil(mean * (self.waiting + 1) / self.limit)))


class Ticket:
    """A request's place on its route and its cancel token; `release()` gives the place back (once)."""

    def __init__(self, admission: Admission, gate: _Gate) -> None:
        self._admission, self._gate = admission, gate
        self.token = CancelToken()
        self._started = time.monotonic()
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._gate.durations.append(time.monotonic() - self._started)
        self._gate.semaphore.release()
        self._admission.in_flight.discard(self)


class Admission:
    """Per-route concurrency limits with a bounded, time-limited wait (module doc). Lives on the event loop."""

    def __init__(self, limit: int, max_waiting: int, wait_s: float) -> None:
        self.limit, self.max_waiting, self.wait_s = limit, max_waiting, wait_s
        self._gates: dict[str, _Gate] = {}
        self.in_flight: set[Ticket] = set()

    def _gate(self, route: str) -> _Gate:
        if route not in self._gates:
            self._gates[route] = _Gate(self.limit, asyncio.Semaphore(self.limit))
        return self._gates[route]

    async def enter(self, route: str, request: Request | None = None) -> Ticket:
        """A place on `route`, after a bounded wait; else `ApiError(503)` with `Retry-After`.

        With `request`, a client that hangs up while waiting leaves the queue at once (`ClientGoneError`): its
        waiting place goes to the next client instead of to a request nobody will read.
        """
        gate = self._gate(route)
        if gate.semaphore.locked() and gate.waiting >= self.max_waiting:
            raise _overloaded(route, gate, "every place and every waiting place is taken")
        gate.waiting += 1
        try:
            placed = await _acquire_unless_gone(gate.semaphore, request, self.wait_s)
        finally:
            gate.waiting -= 1
        if not placed:
            raise _overloaded(route, gate, f"no place came free within {self.wait_s:g} s")
        ticket = Ticket(self, gate)
        self.in_flight.add(ticket)
        return ticket

    def cancel_all(self, reason: str) -> None:
        """Cancel the work of every request in flight (server shutdown)."""
        for ticket in list(self.in_flight):
            ticket.token.cancel(reason)

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            route: {"running": gate.limit - _free(gate), "waiting": gate.waiting}
            for route, gate in sorted(self._gates.items())
        }


async def _acquire_unless_gone(semaphore: asyncio.Semaphore, request: Request | None, wait_s: float) -> bool:
    """Acquire `semaphore` within `wait_s` (True) or not (False); raise `ClientGoneError`, holding nothing, if the
    client hangs up first."""
    acquire = asyncio.ensure_future(semaphore.acquire())
    gone = asyncio.ensure_future(wait_for_disconnect(request)) if request is not None else None
    waits = {acquire} if gone is None else {acquire, gone}
    try:
        await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()  # a cancelled acquire whose place had just come free passes it on (asyncio's rule)
        await asyncio.gather(*waits, return_exceptions=True)
    placed = acquire.done() and not acquire.cancelled() and acquire.exception() is None
    if gone is not None and gone.done() and not gone.cancelled():
        if placed:
            semaphore.release()
        raise ClientGoneError
    return placed


def _free(gate: _Gate) -> int:
    return gate.semaphore._value  # asyncio exposes no public reading of a semaphore's count


def _overloaded(route: str, gate: _Gate, why: str) -> ApiError:
    retry = gate.retry_after()
    return ApiError(
        503,
        f"the service is busy ({route}: {why}); retry in {retry} s",
        "server_overloaded",
        "overloaded",
        headers={"Retry-After": str(retry)},
    )


async def wait_for_disconnect(request: Request) -> None:
    """Return when the client hangs up. Only call once the request body has been read: from then on the
    server's `receive` has nothing to deliver but the disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run_cancellable(request: Request, ticket: Ticket, fn: Callable[..., T], *args: Any) -> T:
    """Run blocking `fn(*args)` in a worker thread under the ticket's token, racing the client's hang-up.

    On a hang-up the token is cancelled, the thread is given time to notice (it lets go of the model at its next
    check) and `ClientGoneError` is raised. If the server cancels this task (shutdown), the token is cancelled too.
    """
    token = ticket.token

    def bound() -> T:
        with cancellable(token):
            return fn(*args)

    work = asyncio.ensure_future(run_in_threadpool(bound))
    await until_done_or_gone(request, token, work)
    return work.result()


async def until_done_or_gone(request: Request, token: CancelToken, work: asyncio.Future[Any]) -> None:
    """Wait for `work` or the client's hang-up, whichever comes first.

    A hang-up (even one that comes with the work's end) cancels `token`, lets the work wind down (`settle`) and
    raises `ClientGoneError`; a server that cancels this wait (shutdown) cancels `token` too.
    """
    gone = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        token.cancel("the server is shutting down")
        raise
    finally:
        gone.cancel()
    if gone.done() and not gone.cancelled():
        token.cancel("the client disconnected")
        await settle(work)
        raise ClientGoneError


async def settle(work: asyncio.Future[Any]) -> None:
    """Wait (bounded) for cancelled work to end, and swallow how it ended: nobody is left to tell."""
    done, _ = await asyncio.wait({work}, timeout=_RELEASE_GRACE_S)
    if not done:
        log.warning("cancelled work still running after %.0f s; releasing its place anyway", _RELEASE_GRACE_S)
        return
    exc = work.exception()
    if exc is not None and not isinstance(exc, RequestCancelledError):
        log.info("cancelled work ended with %s: %s", type(exc).__name__, exc)
