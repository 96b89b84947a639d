"""Forward a request to the upstream with httpx and relay its answer: status, headers and body as they come, a
stream chunk by chunk (a pruned request's stream event by event, to add the savings).

The upstream's failures to answer at all become OpenAI-style JSON errors: unreachable 502, too slow 504, every
connection taken 503. An answer with an error status is relayed unchanged.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from fastapi import Response
from fastapi.responses import StreamingResponse
from starlette.datastructures import Headers

from prunekit.app.api.errors import ApiError
from prunekit.app.proxy.config import ProxySettings
from prunekit.app.proxy.pipeline import Outcome

__all__ = ["Upstream", "prunekit_headers", "relay"]

# Hop-by-hop headers (RFC 9110, 7.6.1) and what httpx sets itself; accept-encoding: the proxy asks for plain bytes.
_REQUEST_DROP = frozenset({"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
                           "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding"})  # fmt: skip
_RESPONSE_DROP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
                            "date", "server"})  # fmt: skip
_EVENT_END = re.compile(rb"\r?\n\r?\n")

# Called with (prompt tokens, seconds to the first token or to the whole answer, completion tokens or 0).
Observer = Callable[[int, float, int], None]


class Upstream:
    """One pooled async client to the upstream's base URL; its connection limit bounds the requests in flight."""

    def __init__(self, settings: ProxySettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = settings.upstream
        self.key = settings.upstream_key.get_secret_value() if settings.upstream_key else None
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s, pool=30.0),
            limits=httpx.Limits(max_connections=settings.max_concurrent_requests),
            transport=transport,
        )

    def headers(self, incoming: Headers) -> list[tuple[str, str]]:
        """The client's headers for the upstream: hop-by-hop ones dropped, the proxy's own key when it has one."""
        out = [(k, v) for k, v in incoming.items() if k.lower() not in _REQUEST_DROP]
        if self.key:
            out = [(k, v) for k, v in out if k.lower() != "authorization"] + [("authorization", f"Bearer {self.key}")]
        return [*out, ("accept-encoding", "identity")]

    async def send(self, method: str, path: str, incoming: Headers, content: bytes | None = None) -> httpx.Response:
        """The upstream's response, its body not read yet (the caller relays it and closes it)."""
        request = self.client.build_request(method, self.base_url + path, headers=self.headers(incoming),
                                            content=content)  # fmt: skip
        try:
            return await self.client.send(request, stream=True)
        except httpx.PoolTimeout as exc:
            raise ApiError(503, "every upstream connection is busy: retry shortly", "server_overloaded",
                           headers={"retry-after": "5"}) from exc  # fmt: skip
        except httpx.TimeoutException as exc:
            raise ApiError(504, f"the upstream did not answer in time: {exc}", "upstream_timeout") from exc
        except httpx.HTTPError as exc:
            raise ApiError(502, f"cannot reach the upstream: {exc}", "upstream_error") from exc

    async def aclose(self) -> None:
        await self.client.aclose()


def prunekit_headers(outcome: Outcome) -> dict[str, str]:
    return {
        "x-prunekit-pruned": outcome.status,
        "x-prunekit-reason": outcome.reason,
        "x-prunekit-passages": str(outcome.passages),
        "x-prunekit-context-tokens-before": str(outcome.tokens_before),
        "x-prunekit-context-tokens-after": str(outcome.tokens_after),
        "x-prunekit-prune-ms": f"{outcome.seconds * 1000:.1f}",
    }


def _extension(outcome: Outcome, explain: bool) -> dict[str, Any]:
    """The response's `prunekit` object."""
    out: dict[str, Any] = {"pruned": outcome.status, "reason": outcome.reason, "passages": outcome.passages,
                           "context_tokens": outcome.tokens_before, "context_tokens_removed": outcome.saved,
                           "prune_ms": round(outcome.seconds * 1000, 1)}  # fmt: skip
    if explain:
        out["explain"] = [p.to_dict() for p in outcome.details]
    return out


def _annotate(event: dict[str, Any], outcome: Outcome, explain: bool) -> dict[str, Any]:
    """Savings into `usage` (flat, as the service reports them), the `prunekit` object beside the finish reason."""
    usage = event.get("usage")
    if isinstance(usage, dict) and outcome.status == "yes":
        usage["context_tokens"] = outcome.tokens_before
        usage["context_tokens_removed"] = outcome.saved
    choices = event.get("choices")
    finished = isinstance(choices, list) and any(isinstance(c, dict) and c.get("finish_reason") for c in choices)
    if finished or (usage is not None and "choices" not in event):
        event["prunekit"] = _extension(outcome, explain)
    return event


async def relay(
    response: httpx.Response, outcome: Outcome, explain: bool, prompt_estimate: int, observe: Observer
) -> Response:
    """The client's response: the upstream's status, headers and body, with prunekit's headers added."""
    headers = {k: v for k, v in response.headers.items() if k.lower() not in _RESPONSE_DROP}
    headers.update(prunekit_headers(outcome))
    is_stream = response.headers.get("content-type", "").startswith("text/event-stream")
    if not is_stream or response.status_code >= 400:
        started = time.perf_counter()
        try:
            data = await response.aread()
        finally:
            await response.aclose()
        return Response(_finished_body(data, response, outcome, explain, observe, started), response.status_code,
                        headers=headers)  # fmt: skip
    rewrite = outcome.status == "yes" or explain
    chunks = _stream(response, outcome, explain, rewrite, prompt_estimate, observe)
    return StreamingResponse(chunks, status_code=response.status_code, headers=headers)


def _finished_body(
    data: bytes, response: httpx.Response, outcome: Outcome, explain: bool, observe: Observer, started: float
) -> bytes:
    if response.status_code != 200 or not response.headers.get("content-type", "").startswith("application/json"):
        return data
    try:
        body = json.loads(data)
        usage = body.get("usage") or {}
        seconds = response.elapsed.total_seconds() if response.is_closed else time.perf_counter() - started
        observe(int(usage.get("prompt_tokens") or 0), seconds, int(usage.get("completion_tokens") or 0))
    except (ValueError, AttributeError, TypeError):
        return data  # not the completion shape: relay as it came
    if outcome.status != "yes" and not explain:
        return data
    return json.dumps(_annotate(body, outcome, explain), ensure_ascii=False).encode()


async def _stream(
    response: httpx.Response, outcome: Outcome, explain: bool, rewrite: bool, prompt_estimate: int, observe: Observer
) -> AsyncIterator[bytes]:
    """Upstream chunks as they come; when `rewrite`, complete events (usage and finish chunks annotated)."""
    started = time.perf_counter()
    first_token_s: float | None = None
    buffer = b""
    try:
        async for chunk in response.aiter_bytes():
            if first_token_s is None and b'"content"' in chunk and b'"content": ""' not in chunk:
                first_token_s = time.perf_counter() - started
            if not rewrite:
                yield chunk
                continue
            buffer += chunk
            ready, buffer = _complete_events(buffer)
            if ready:
                yield _rewrite_events(ready, outcome, explain)
        if buffer:
            yield buffer
    finally:
        await response.aclose()
    if first_token_s is not None:
        observe(prompt_estimate, first_token_s, 0)


def _complete_events(buffer: bytes) -> tuple[bytes, bytes]:
    """(the complete SSE events at the start of `buffer`, the incomplete rest)."""
    last = None
    for last in _EVENT_END.finditer(buffer):  # noqa: B007  (the last separator is what counts)
        pass
    if last is None:
        return b"", buffer
    return buffer[: last.end()], buffer[last.end() :]


def _rewrite_events(events: bytes, outcome: Outcome, explain: bool) -> bytes:
    out = []
    for line in events.splitlines(keepends=True):
        payload = line[5:].strip() if line.startswith(b"data:") else b""
        if payload and payload != b"[DONE]" and (b'"usage"' in payload or b'"finish_reason"' in payload):
            try:
                event = json.loads(payload)
            except ValueError:
                out.append(line)
                continue
            ending = line[len(line.rstrip(b"\r\n")) :]
            line = b"data: " + json.dumps(_annotate(event, outcome, explain), ensure_ascii=False).encode() + ending
        out.append(line)
    return b"".join(out)
