"""Request ids, structured access logs and a per-key rate limit, as pure ASGI middleware."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from app.errors import error_body

__all__ = ["CatchAll", "RateLimit", "RequestContext"]

log = logging.getLogger("prunekit.access")


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return ""


def _bearer(scope: dict[str, Any]) -> str:
    return _header(scope, b"authorization").partition(" ")[2]


def _key_id(token: str) -> str:
    return "key:" + hashlib.sha256(token.encode()).hexdigest()[:12]  # a hash: keys never reach the logs


def _address(scope: dict[str, Any]) -> str:
    client = scope.get("client") or ("-", 0)
    return f"ip:{client[0]}"


def _caller(scope: dict[str, Any]) -> str:
    """For the access log: the bearer token as sent (hashed), else the client address."""
    token = _bearer(scope)
    return _key_id(token) if token else _address(scope)


class RequestContext:
    """Gives every request an id (the client's `X-Request-ID` when sane), echoes it, logs one JSON line."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if 0 < len(given) <= 64 and given.replace("-", "").isalnum() else uuid.uuid4().hex
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            record = {
                "request_id": request_id,
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status,
                "ms": round((time.perf_counter() - started) * 1000, 1),
                "client": _caller(scope),
            }
            log.info(json.dumps(record))


class RateLimit:
    """A token bucket per client (a configured API key, else the client address): `per_minute` requests,
    bursts up to `burst`. Over the limit: 429 with `Retry-After`. Health checks are exempt.

    Only a configured key earns a bucket of its own: keyed by any token sent, a client could make up a fresh
    token per request and never be limited. Buckets left idle long enough to be full again are dropped, so the
    table holds only the recently active clients.
    """

    def __init__(self, app: Any, per_minute: int, burst: int | None = None, api_keys: Sequence[str] = ()) -> None:
        self.app = app
        self.rate = per_minute / 60.0
        self.burst = float(burst or max(1, per_minute // 6))
        self.api_keys = tuple(api_keys)
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last refill time)
        self._lock = threading.Lock()
        self._last_sweep = time.monotonic()

    def client(self, scope: dict[str, Any]) -> str:
        token = _bearer(scope)
        if token and any(hmac.compare_digest(token, key) for key in self.api_keys):
            return _key_id(token)
        return _address(scope)

    def _take(self, client: str) -> float:
        """0 when allowed, else the seconds until a token is available."""
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            tokens, last = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _sweep(self, now: float) -> None:
        """Drop the buckets that have refilled (a full bucket is the same as none); at most once a refill time."""
        refill = self.burst / self.rate
        if now - self._last_sweep < refill:
            return
        self._last_sweep = now
        self._buckets = {c: (tokens, last) for c, (tokens, last) in self._buckets.items() if now - last < refill}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.rate <= 0 or scope.get("path") == "/health":
            await self.app(scope, receive, send)
            return
        wait = self._take(self.client(scope))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        body = json.dumps(error_body("rate limit exceeded: slow down", "rate_limit_error", "rate_limited")).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(max(1, round(wait))).encode()),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class CatchAll:
    """The innermost net for unexpected errors: log the traceback, answer a JSON 500, and do not re-raise.

    Why not leave it to the `Exception` handler: Starlette runs that handler in its outermost middleware and
    re-raises afterwards, so uvicorn closes the keep-alive connection and a client's next request on it is
    reset. Here the error ends with the response. After the response has started, nothing can be sent any more:
    the error is re-raised and the server closes the stream.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:
                raise
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            body = json.dumps(error_body("internal error: the server logged the details", "internal_error")).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": body})
