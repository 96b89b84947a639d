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

from prunekit.app.api.errors import error_body

__all__ = ["LOOPBACK_NAMES", "CatchAll", "HostGuard", "RateLimit", "RequestContext", "host_allow_list", "key_matches"]

log = logging.getLogger("prunekit.access")


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return ""


def _bearer(scope: dict[str, Any]) -> str:
    return _header(scope, b"authorization").partition(" ")[2]


def key_matches(token: str, keys: Sequence[str]) -> bool:
    """Whether a bearer token (as the server decoded the header: latin-1) is one of `keys`, compared as bytes in
    constant time: a token with any byte at all is simply wrong, never an error."""
    sent = token.encode("latin-1", errors="replace")
    return any(hmac.compare_digest(sent, key.encode()) for key in keys)


def _key_id(token: str) -> str:
    return (
        "key:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    )  # a hash: keys never reach the logs


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
        if token and key_matches(token, self.api_keys):
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


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def host_allow_list(bound_host: str, configured: list[str]) -> list[str]:
    """The `Host` names a server bound to `bound_host` answers: as configured, else the loopback names when bound
    to loopback (a web page cannot then reach it by DNS rebinding), else any."""
    if configured:
        return configured
    if bound_host in LOOPBACK_NAMES or bound_host.startswith("127."):
        return [*LOOPBACK_NAMES, bound_host]
    return ["*"]


class HostGuard:
    """Refuse (403) a request whose `Host` is not one of `hosts`, or whose `Origin` is a foreign web page.

    Why: a service on 127.0.0.1 is reachable from every web page the user opens. A page can send it requests
    (cross-site requests need no permission to be *sent*), and DNS rebinding makes the browser send them with the
    attacker's host name. So the `Host` header must name this service (`hosts`, `*` for any), and a request that
    carries an `Origin` (every browser request across sites does) must come from the service's own page or from
    an origin listed in `origins` (`*` for any). Clients that are not browsers send no `Origin`.
    """

    def __init__(self, app: Any, hosts: Sequence[str], origins: Sequence[str] = ()) -> None:
        self.app = app
        self.hosts = {h.lower().strip("[]") for h in hosts}
        self.origins = {o.lower().rstrip("/") for o in origins}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host").lower()
        origin = _header(scope, b"origin").lower().rstrip("/")
        problem = ""
        if "*" not in self.hosts and _hostname(host) not in self.hosts:
            problem = f"host {host!r} is not served here (PRUNEKIT_ALLOWED_HOSTS)"
        elif origin and not self._origin_allowed(origin, host):
            problem = f"requests from the web page {origin!r} are not allowed (PRUNEKIT_ALLOWED_ORIGINS)"
        if not problem:
            await self.app(scope, receive, send)
            return
        body = json.dumps(error_body(problem, "permission_error", "forbidden_host")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _origin_allowed(self, origin: str, host: str) -> bool:
        if "*" in self.origins or origin in self.origins:
            return True
        scheme, _, rest = origin.partition("://")
        return scheme in ("http", "https") and rest == host  # the service's own page


def _hostname(host: str) -> str:
    """`Host` without its port: `127.0.0.1:8000` -> `127.0.0.1`, `[::1]:8000` -> `::1`."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
