"""`create_proxy_app(settings)`: the pruning proxy as a FastAPI app; `prunekit proxy` runs it under uvicorn.

Routes: `POST /v1/chat/completions` (pruned, then forwarded), `GET /v1/models` (forwarded), `GET /metrics`
(Prometheus), `GET /health`. The service's middleware bounds every request: a body size limit, the Host/Origin
guard, an optional rate limit, request ids and access logs, and the JSON 500 net.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool

from prunekit.app.api.errors import install_error_handlers
from prunekit.app.api.limits import BodySizeLimit
from prunekit.app.api.middleware import CatchAll, HostGuard, RateLimit, RequestContext
from prunekit.app.proxy.config import EXTENSION_FIELD, ProxySettings, parse_options
from prunekit.app.proxy.forward import Upstream, relay
from prunekit.app.proxy.gate import BreakEven
from prunekit.app.proxy.metrics import ProxyMetrics
from prunekit.app.proxy.pipeline import Outcome, Pruning
from prunekit.context_pruner import ContextPruner
from prunekit.decoding.errors import InvalidRequestError

__all__ = ["create_proxy_app"]

log = logging.getLogger(__name__)

PrunerLoader = Callable[[], ContextPruner]


def _load_default_pruner() -> ContextPruner:
    from prunekit.context_pruner import default_pruner

    return default_pruner()


def create_proxy_app(
    settings: ProxySettings,
    pruner: ContextPruner | PrunerLoader = _load_default_pruner,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The proxy app. `pruner`: a loaded pruner, or a function that loads one at start-up (the shipped weights by
    default); a pruner that fails to load leaves every request forwarded unpruned (`x-prunekit-pruned: error`)."""
    gate = BreakEven(settings.min_context_tokens)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = None
        try:
            loaded = pruner if isinstance(pruner, ContextPruner) else await run_in_threadpool(pruner)
        except Exception:
            log.exception("the context pruner did not load: requests are forwarded unpruned")
        app.state.pruning = Pruning(settings, loaded, gate)
        app.state.upstream = Upstream(settings, transport)
        try:
            yield
        finally:
            await app.state.upstream.aclose()

    app = FastAPI(title="prunekit proxy", version="0.1.0", lifespan=lifespan)
    app.add_middleware(CatchAll)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute)
    app.add_middleware(HostGuard, hosts=settings.host_allow_list(), origins=settings.allowed_origins)
    app.add_middleware(RequestContext)
    app.state.settings = settings
    app.state.metrics = ProxyMetrics(gate)
    install_error_handlers(app)
    app.include_router(_router())
    return app


def _router() -> APIRouter:
    router = APIRouter()
    router.add_api_route("/v1/chat/completions", chat_completions, methods=["POST"])
    router.add_api_route("/v1/models", models, methods=["GET"])
    router.add_api_route("/metrics", metrics, methods=["GET"])
    router.add_api_route("/health", health, methods=["GET"])
    return router


async def chat_completions(request: Request) -> Response:
    """Prune the request's context for its question, forward it, relay the answer (see the module docstring)."""
    state = request.app.state
    settings: ProxySettings = state.settings
    raw = await request.body()  # bounded by BodySizeLimit
    body = _json_object(raw)
    bearer = request.headers.get("authorization", "").partition(" ")[2]
    options = parse_options(body.get(EXTENSION_FIELD), settings, settings.mode_for_key(bearer))
    extraction = state.pruning.check(body.get("messages"), options)
    outcome: Outcome = await state.pruning.run(body["messages"], extraction, options)
    state.metrics.record(outcome)
    content = _outgoing(raw, body, outcome)
    response = await _send(state, "/chat/completions", request, content)
    prompt_estimate = len(content) // 4  # bytes per token, roughly: only for the gate's prefill rate
    return await relay(response, outcome, options.explain, prompt_estimate, state.pruning.gate.observe_upstream)


async def models(request: Request) -> Response:
    state = request.app.state
    response = await _send(state, "/models", request, None, method="GET")
    return await relay(response, Outcome("skipped", "not_chat"), False, 0, lambda *_: None)


async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


async def health() -> dict[str, str]:
    return {"status": "ok"}


async def _send(state: Any, path: str, request: Request, content: bytes | None, method: str = "POST") -> httpx.Response:
    try:
        return await state.upstream.send(method, path, request.headers, content)
    except Exception:
        state.metrics.upstream_errors.labels("unreachable").inc()
        raise


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequestError("request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object (an OpenAI chat completion request)")
    return body


def _outgoing(raw: bytes, body: dict[str, Any], outcome: Outcome) -> bytes:
    """What the upstream gets: the bytes as they came when nothing changed, else the body re-encoded with the
    pruned messages and without prunekit's extension field (which the upstream would not know)."""
    if outcome.status != "yes" and EXTENSION_FIELD not in body:
        return raw
    out = {k: v for k, v in body.items() if k != EXTENSION_FIELD}
    if outcome.status == "yes":
        out["messages"] = outcome.messages
    return json.dumps(out, ensure_ascii=False).encode()
