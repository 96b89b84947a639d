"""The OpenAI-compatible HTTP service.

`create_app(settings, model)` builds the FastAPI app; `prunekit serve` runs it under uvicorn.
Every chat model (`prunekit-chat`, `-rag`, `-sql`, `-agents`, `-auto`) runs through one LangGraph router
graph (`app.graphs.router`). Model calls are blocking, so they run in worker threads.

Extensions to OpenAI's chat completion (all optional): request fields `collection`, `database`, `domain`,
`format`, `format_method`, `thread_id`, `progress`; the response's `usage` adds what pruning saved (e.g.
`context_tokens_removed`, `agent_calls_avoided`, `sql_repair_calls`) and a top-level `prunekit` object holds
the route taken, the savings and the route's details (citations, SQL and rows, the agent team). In a
stream, `progress: true` adds chunks with `choices: []` and `prunekit.progress`; the finish chunk carries
the `prunekit` object.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Request
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from sse_starlette import EventSourceResponse

from app.backends import build_chat_model
from app.errors import ApiError, error_body, install_error_handlers, status_of
from app.graphs.chat import params_to_state
from app.graphs.router import MODEL_ROUTES, RouterResources, build_router_graph
from app.limits import BodySizeLimit
from app.middleware import CatchAll, RateLimit, RequestContext
from app.schemas import THREAD_ID_PATTERN, AgentsRequest, ChatCompletionRequest, PruneRequest, SqlRequest
from app.settings import Settings
from app.threads import open_checkpointer
from app.web import web_router
from decoding import ChatModel, GenerationParams

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, model: ChatModel | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "model", None) is None:
            app.state.model = await run_in_threadpool(build_chat_model, settings)
        resources = RouterResources(
            app.state.model,
            databases=settings.database_registry(),
            store_factory=lambda: _open_store(settings),
            sql_demos=settings.sql_demos,
            default_collection=settings.rag_collection,
        )
        app.state.resources = resources
        try:
            with open_checkpointer(settings) as checkpointer:
                app.state.chat_graph = build_router_graph(resources)
                app.state.thread_graph = build_router_graph(resources, checkpointer)
                log.info("serving %s through backend %s", ", ".join(MODEL_ROUTES), app.state.model.name)
                yield
        finally:
            resources.close()

    app = FastAPI(title="prunekit", version="0.1.0", lifespan=lifespan)
    # Outermost last: every request gets an id and a log line, then the rate limit, then the body limit.
    app.add_middleware(CatchAll)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute, api_keys=settings.api_keys)
    app.add_middleware(RequestContext)
    app.state.model = model
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(web_router())  # the chat page at /

    def require_key(request: Request) -> str:
        """Refuse a request without a configured key; return who owns its threads ("" when keys are off)."""
        if not settings.api_keys:
            return ""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(token, k) for k in settings.api_keys):
            raise ApiError(
                401,
                "missing or invalid API key: send 'Authorization: Bearer <key>'",
                "authentication_error",
                "invalid_api_key",
            )
        return hashlib.sha256(token.encode()).hexdigest()[:16]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "backend": app.state.model.name, "rss_mb": round(_rss_mb(), 1)}

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 0, "owned_by": "prunekit"} for m in MODEL_ROUTES],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatCompletionRequest, owner: str = Depends(require_key)
    ) -> dict[str, Any] | EventSourceResponse:
        route = MODEL_ROUTES.get(body.model)
        if route is None:
            raise ApiError(
                404, f"model {body.model!r} does not exist; GET /v1/models lists the models", code="model_not_found"
            )
        # Cheap checks first, so a bad database or collection is a 4xx even for a stream.
        await run_in_threadpool(_check_route, app.state.resources, route, body)
        max_tokens = body.max_completion_tokens or body.max_tokens or 256
        if max_tokens > settings.max_tokens_limit:
            raise ApiError(400, f"max_tokens must be at most {settings.max_tokens_limit}, got {max_tokens}")
        params = GenerationParams(
            max_tokens=max_tokens,
            temperature=0.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            stop=body.stop_tuple(),
            seed=body.seed,
            format=body.format,
            format_method=body.format_method,
        )
        state = {
            "messages": [m.as_message() for m in body.messages],
            "params": params_to_state(params),
            "route": route,
            "collection": body.collection,
            "database": body.database,
            "domain": body.domain,
        }
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        graph, config = app.state.chat_graph, None
        if body.thread_id is not None:
            graph, config = app.state.thread_graph, _thread_config(owner, body.thread_id)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return await _stream_response(graph, state, config, completion_id, body.model, include_usage, body.progress)
        final = await run_in_threadpool(graph.invoke, state, config)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": final["answer"]},
                    "finish_reason": final["finish_reason"],
                }
            ],
            "usage": _usage(final["usage"], final.get("savings")),
            "prunekit": _extension(final),
        }

    @app.post("/v1/sql", dependencies=[Depends(require_key)])
    async def sql(body: SqlRequest) -> dict[str, Any]:
        resources: RouterResources = app.state.resources

        def run() -> dict[str, Any]:
            path = resources.databases.path(body.database)
            result = resources.sql_agent().answer(body.question, path)
            out = result.to_dict()
            out.pop("db_path")  # the client named the database; the server's paths stay private
            out.update(object="sql.result", database=body.database)
            return out

        return await run_in_threadpool(run)

    @app.get("/v1/sql/databases", dependencies=[Depends(require_key)])
    async def sql_databases() -> dict[str, Any]:
        return {"object": "list", "data": app.state.resources.databases.names()}

    @app.post("/v1/agents", dependencies=[Depends(require_key)])
    async def agents(body: AgentsRequest) -> dict[str, Any]:
        from app.agents import make_task, solve

        task = make_task(body.domain, body.task, body.context, tuple(body.choices))
        return await run_in_threadpool(solve, app.state.model, task, body.domain)

    @app.post("/v1/prune", dependencies=[Depends(require_key)])
    async def prune(body: PruneRequest) -> dict[str, Any]:
        from context_pruner import default_pruner

        def run() -> list[list[Any]]:
            pruner = default_pruner()
            return [
                pruner.prune(
                    item.question,
                    item.contexts,
                    titles=item.titles,
                    threshold=body.threshold,
                    top_k=body.top_k,
                    reorder=body.reorder,
                )
                for item in body.items
            ]

        results = await run_in_threadpool(run)
        before = sum(r.tokens_before for rs in results for r in rs)
        after = sum(r.tokens_after for rs in results for r in rs)
        return {
            "object": "prune.result",
            "results": [[r.to_dict() for r in rs] for rs in results],
            "usage": {"context_tokens": before, "kept_tokens": after, "removed_tokens": before - after},
        }

    @app.get("/v1/threads/{thread_id}")
    async def get_thread(
        thread_id: Annotated[str, Path(max_length=128, pattern=THREAD_ID_PATTERN)], owner: str = Depends(require_key)
    ) -> dict[str, Any]:
        snapshot = await run_in_threadpool(app.state.thread_graph.get_state, _thread_config(owner, thread_id))
        if not snapshot.values:
            raise ApiError(404, f"thread {thread_id!r} does not exist", code="thread_not_found")
        return {"id": thread_id, "object": "thread", "messages": snapshot.values.get("messages", [])}

    return app


def _thread_config(owner: str, thread_id: str) -> dict[str, Any]:
    """A thread id lives in its API key's namespace: one client cannot read or extend another's conversation."""
    return {"configurable": {"thread_id": f"{owner}/{thread_id}" if owner else thread_id}}


def _open_store(settings: Settings) -> Any:
    from app.rag.store import VectorStore
    from decoding.embeddings import load_embedder

    return VectorStore(load_embedder(), **settings.vector_store_location())


def _check_route(resources: RouterResources, route: str, body: ChatCompletionRequest) -> None:
    """Refuse what would fail inside the graph anyway, before a stream starts: an unknown database,
    collection or an agents task the domain cannot take."""
    from decoding import NotFoundError

    if route == "sql":
        resources.databases.path(body.database)
    elif route == "rag":
        name = body.collection or resources.default_collection
        if not resources.has_collection(name):
            raise NotFoundError(f"collection {name!r} does not exist; add documents with `prunekit ingest`")
    elif route == "agents" and (body.domain or "math") == "general":
        raise ApiError(400, "the general agent pool needs a paragraph or choices: use POST /v1/agents")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _usage(usage: dict[str, int], savings: dict[str, int] | None = None) -> dict[str, int]:
    """OpenAI's usage plus, flat, what each pruning stage saved (integers only: strict clients parse it)."""
    out = {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}
    out.update({k: int(v) for k, v in (savings or {}).items() if isinstance(v, int | float)})
    return out


def _extension(final: dict[str, Any]) -> dict[str, Any]:
    """The `prunekit` object of a response: route taken, savings, the route's details."""
    return {"route": final.get("route"), "savings": final.get("savings", {}), **final.get("details", {})}


async def _stream_response(
    graph: Any,
    state: dict[str, Any],
    config: dict[str, Any] | None,
    completion_id: str,
    model_id: str,
    include_usage: bool,
    progress: bool,
) -> EventSourceResponse:
    """OpenAI chunk stream: role first, content deltas, a finish chunk, optional usage, then [DONE].

    With `progress`, the graph's progress events come as chunks with `choices: []` and `prunekit.progress`
    (off by default: clients that index `choices[0]` of every chunk would break on them).

    Events are awaited up to the first one the client is sent (a text delta, or a progress event when asked
    for) before the response starts, so a request that fails before then (e.g. a prompt longer than the
    model's context, an agents task the domain cannot take) still gets a proper 4xx, not a broken stream.
    """
    graph_events = graph.stream(state, config, stream_mode=["custom", "values"])
    events = iterate_in_threadpool(graph_events)
    buffered: list[Any] = []
    while (event := await anext(events, None)) is not None:
        buffered.append(event)
        mode, payload = event
        if mode == "custom" and (payload.get("delta") or (progress and "progress" in payload)):
            break
    created = int(time.time())

    def chunk(
        delta: dict[str, Any] | None,
        finish: str | None = None,
        usage: dict[str, int] | None = None,
        extension: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_id,
            "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            body["usage"] = usage
        if extension is not None:
            body["prunekit"] = extension
        return {"data": json.dumps(body)}

    async def produce() -> AsyncIterator[dict[str, Any]]:
        yield chunk({"role": "assistant", "content": ""})
        final: dict[str, Any] = {}
        try:
            async for mode, payload in _replay(buffered, events):
                if mode == "custom" and payload.get("delta"):
                    yield chunk({"content": payload["delta"]})
                elif mode == "custom" and progress and "progress" in payload:
                    yield chunk(None, extension={"progress": payload["progress"]})
                elif mode == "values":
                    final = payload
        except Exception as exc:  # the stream has started: report the error in-band, as OpenAI does
            status, kind, message = status_of(exc)
            log.error("stream %s failed with %d: %s", completion_id, status, exc)
            yield {"data": json.dumps(error_body(message, kind))}
            yield {"data": "[DONE]"}
            return
        finally:
            # Close the graph's generator too: a client that hangs up must free the model at once.
            await events.aclose()
            await run_in_threadpool(graph_events.close)
        yield chunk({}, final.get("finish_reason", "stop"), extension=_extension(final))
        if include_usage:
            usage = final.get("usage", {"prompt_tokens": 0, "completion_tokens": 0})
            yield chunk(None, usage=_usage(usage, final.get("savings")))
        yield {"data": "[DONE]"}

    return EventSourceResponse(produce(), ping=15)


async def _replay(buffered: list[Any], rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    for event in buffered:
        yield event
    async for event in rest:
        yield event
