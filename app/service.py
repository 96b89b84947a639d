"""The OpenAI-compatible HTTP service.

`create_app(settings, model)` builds the FastAPI app; `prunekit serve` runs it under uvicorn.
The chat runs through the LangGraph chat graph so that later graphs (RAG, SQL, agents) plug in
behind the same endpoint. Model calls are blocking, so they run in worker threads.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from sse_starlette import EventSourceResponse

from app.backends import build_chat_model
from app.errors import ApiError, error_body, install_error_handlers, status_of
from app.graphs.chat import build_chat_graph, params_to_state
from app.limits import BodySizeLimit
from app.middleware import RateLimit, RequestContext
from app.schemas import AgentsRequest, ChatCompletionRequest, PruneRequest
from app.settings import Settings
from app.threads import open_checkpointer
from decoding import ChatModel, GenerationParams

__all__ = ["CHAT_MODEL_ID", "create_app"]

log = logging.getLogger(__name__)

CHAT_MODEL_ID = "prunekit-chat"


def create_app(settings: Settings | None = None, model: ChatModel | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "model", None) is None:
            app.state.model = await run_in_threadpool(build_chat_model, settings)
        with open_checkpointer(settings) as checkpointer:
            app.state.chat_graph = build_chat_graph(app.state.model)
            app.state.thread_graph = build_chat_graph(app.state.model, checkpointer)
            log.info("serving %s through backend %s", CHAT_MODEL_ID, app.state.model.name)
            yield

    app = FastAPI(title="prunekit", version="0.1.0", lifespan=lifespan)
    # Outermost last: every request gets an id and a log line, then the rate limit, then the body limit.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute)
    app.add_middleware(RequestContext)
    app.state.model = model
    app.state.settings = settings
    install_error_handlers(app)

    def require_key(request: Request) -> None:
        if not settings.api_keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(token, k) for k in settings.api_keys):
            raise ApiError(
                401,
                "missing or invalid API key: send 'Authorization: Bearer <key>'",
                "authentication_error",
                "invalid_api_key",
            )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "backend": app.state.model.name}

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": CHAT_MODEL_ID, "object": "model", "created": 0, "owned_by": "prunekit"}],
        }

    @app.post("/v1/chat/completions", dependencies=[Depends(require_key)], response_model=None)
    async def chat_completions(body: ChatCompletionRequest) -> dict[str, Any] | EventSourceResponse:
        if body.model != CHAT_MODEL_ID:
            raise ApiError(
                404, f"model {body.model!r} does not exist; GET /v1/models lists the models", code="model_not_found"
            )
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
        state = {"messages": [m.as_message() for m in body.messages], "params": params_to_state(params)}
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        graph, config = app.state.chat_graph, None
        if body.thread_id is not None:
            graph, config = app.state.thread_graph, _thread_config(body.thread_id)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return await _stream_response(graph, state, config, completion_id, include_usage)
        final = await run_in_threadpool(graph.invoke, state, config)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": CHAT_MODEL_ID,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": final["answer"]},
                    "finish_reason": final["finish_reason"],
                }
            ],
            "usage": _usage(final["usage"]),
        }

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

    @app.get("/v1/threads/{thread_id}", dependencies=[Depends(require_key)])
    async def get_thread(thread_id: str) -> dict[str, Any]:
        snapshot = await run_in_threadpool(app.state.thread_graph.get_state, _thread_config(thread_id))
        if not snapshot.values:
            raise ApiError(404, f"thread {thread_id!r} does not exist", code="thread_not_found")
        return {"id": thread_id, "object": "thread", "messages": snapshot.values.get("messages", [])}

    return app


def _thread_config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def _usage(usage: dict[str, int]) -> dict[str, int]:
    return {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}


async def _stream_response(
    graph: Any, state: dict[str, Any], config: dict[str, Any] | None, completion_id: str, include_usage: bool
) -> EventSourceResponse:
    """OpenAI chunk stream: role first, content deltas, a finish chunk, optional usage, then [DONE].

    Events are awaited up to the first text delta before the response starts, so a request the
    model refuses (e.g. a prompt longer than the context) still gets a proper 4xx, not a broken stream.
    """
    graph_events = graph.stream(state, config, stream_mode=["custom", "values"])
    events = iterate_in_threadpool(graph_events)
    buffered: list[Any] = []
    while (event := await anext(events, None)) is not None:
        buffered.append(event)
        if event[0] == "custom":
            break
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": CHAT_MODEL_ID,
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage:
            body["usage"] = _usage(usage)
        return {"data": json.dumps(body)}

    async def produce() -> AsyncIterator[dict[str, Any]]:
        yield chunk({"role": "assistant", "content": ""})
        final: dict[str, Any] = {}
        try:
            async for mode, payload in _replay(buffered, events):
                if mode == "custom" and payload.get("delta"):
                    yield chunk({"content": payload["delta"]})
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
        yield chunk({}, final.get("finish_reason", "stop"))
        if include_usage:
            yield chunk({}, usage=final.get("usage", {"prompt_tokens": 0, "completion_tokens": 0}))
        yield {"data": "[DONE]"}

    return EventSourceResponse(produce(), ping=15)


async def _replay(buffered: list[Any], rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    for event in buffered:
        yield event
    async for event in rest:
        yield event
