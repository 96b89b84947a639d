"""The HTTP API: OpenAI's `/v1/models`, `/v1/chat/completions` and `/v1/embeddings`, the common `/v1/rerank`,
and prunekit's own endpoints.

Every chat model (`prunekit-chat`, `-rag`, `-sql`, `-agents`, `-auto`) runs through one LangGraph router graph
(`app.graphs.router`). Model calls are blocking, so they run in worker threads. Extensions to OpenAI's chat
completion (all optional): request fields `collection`, `database`, `domain`, `format`, `format_method`,
`thread_id`, `progress`, and vLLM's `repetition_penalty` (default: the loop guard, `app.backends`). OpenAI's
`response_format` and `tools` become an output constraint checked here, before a place in the queue is taken
(`app.graphs.params.output_constraint`, then the backend's `FormatGuide.resolve`); what the
response adds is in `app.api.completions`. Handlers find the model, the graphs and the settings on `request.app.state`
(set up by `app.api.service.create_app`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.concurrency import run_in_threadpool

from prunekit.app.api.admission import ClientGoneError, Ticket, run_cancellable
from prunekit.app.api.completions import completion_body, stream_completion
from prunekit.app.api.embeddings import EMBEDDING_MODEL, embed_request, request_texts
from prunekit.app.api.errors import ApiError
from prunekit.app.api.middleware import key_matches
from prunekit.app.api.rerank import RERANK_MODEL, document_texts, rerank_body
from prunekit.app.api.schemas import (
    THREAD_ID_PATTERN,
    AgentsRequest,
    ChatCompletionRequest,
    EmbeddingsRequest,
    PruneRequest,
    RerankRequest,
    SqlRequest,
)
from prunekit.app.graphs.params import generation_params, output_constraint, request_params
from prunekit.app.graphs.router import MODEL_ROUTES, RouterResources
from prunekit.decoding import as_local
from prunekit.decoding.types import UPSTREAM_FIELDS

__all__ = ["api_router"]

api_router = APIRouter()


def require_key(request: Request) -> str:
    """Refuse a request without a configured key; return who owns its threads ("" when keys are off)."""
    keys = request.app.state.settings.api_keys
    if not keys:
        return ""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not key_matches(token, keys):
        raise ApiError(
            401,
            "missing or invalid API key: send 'Authorization: Bearer <key>'",
            "authentication_error",
            "invalid_api_key",
        )
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@api_router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    if request.app.state.settings.api_keys:  # anyone may ask: tell them nothing about the deployment
        return {"status": "ok"}
    return {"status": "ok", "backend": request.app.state.model.name, "rss_mb": round(_rss_mb(), 1)}


@api_router.get("/v1/models", dependencies=[Depends(require_key)])
async def models() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "prunekit"}
            for m in (*MODEL_ROUTES, EMBEDDING_MODEL, RERANK_MODEL)
        ],
    }


@api_router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    request: Request, body: ChatCompletionRequest, owner: str = Depends(require_key)
) -> dict[str, Any] | Response:
    served = request.app.state  # what create_app set up: settings, resources, graphs, admission
    route = MODEL_ROUTES.get(body.model)
    if route is None:
        raise ApiError(
            404, f"model {body.model!r} does not exist; GET /v1/models lists the models", code="model_not_found"
        )
    _refuse_unsupported(body)
    # Checks first, so a bad database, collection or output format is a 4xx even for a stream.
    state = await run_in_threadpool(_checked_state, served, route, body)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    graph, config = served.chat_graph, None
    if body.thread_id is not None:
        graph, config = served.thread_graph, _thread_config(owner, body.thread_id)
    try:
        ticket = await served.admission.enter(f"chat:{route}", request)
    except ClientGoneError:  # hung up while waiting for a place
        return Response(status_code=499)
    if body.stream:  # the stream owns the ticket from here
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await stream_completion(
            request, ticket, graph, state, config, completion_id, body.model, include_usage, body.progress
        )
    final = await _run_admitted(request, ticket, graph.invoke, state, config)
    if isinstance(final, Response):
        return final
    # a worker thread: the body checks a constrained answer against its schema (client-sized work)
    return await run_in_threadpool(completion_body, final, completion_id, body.model)


def _checked_state(served: Any, route: str, body: ChatCompletionRequest) -> dict[str, Any]:
    """The router graph's input for a chat completion (`app.graphs.router.RouterState`), refused early (a 4xx)
    when the route would fail on it: `_check_route`, and an output constraint the backend cannot enforce."""
    _check_route(served.resources, route, body)
    constraint = output_constraint(body)
    params = request_params(body, served.settings, constraint)
    output = constraint.output
    if output is not None:
        params, output = _enforcement(served.resources.model, route, params, output, body)
    return {
        "messages": [m.as_message() for m in body.messages],
        "params": params,
        "output": output,
        "route": route,
        "collection": body.collection,
        "database": body.database,
        "domain": body.domain,
    }


def _enforcement(
    model: Any, route: str, params: dict[str, Any], output: dict[str, Any], body: ChatCompletionRequest
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`params` with the one constraint the backend will enforce, and `output` with how: on a local backend
    `FormatGuide.resolve` (Deco-G when the schema's automaton compiles, else llguidance's mask); a remote one gets
    the request's own fields to forward, and its server's enforcement is reported as such (`method: upstream`)."""
    allowed = ("chat",) if output["kind"] == "tools" else ("chat", "rag")
    if route not in allowed:
        what = "tools" if output["kind"] == "tools" else "response_format"
        models = " and ".join(f"prunekit-{r}" for r in allowed)
        raise ApiError(400, f"{what} applies to {models}, whose answer is the model's text", code="invalid_request")
    local = as_local(model)
    if local is None:  # the remote server enforces its own fields; the report says so
        fields = {name: getattr(body, name) for name in sorted(UPSTREAM_FIELDS) if getattr(body, name) is not None}
        params = {**params, "format": None, "grammar": None, "upstream_fields": fields}
        return params, {**output, "system": None, "enforcement": {"method": "upstream"}}
    resolved, report = local.format_guide().resolve(generation_params(params))
    params = {**params, "format": resolved.format, "grammar": resolved.grammar}
    return params, {**output, "enforcement": report}


def _refuse_unsupported(body: ChatCompletionRequest) -> None:
    unsupported = body.unsupported_fields()
    if unsupported:
        names = ", ".join(unsupported)
        raise ApiError(
            400,
            f"{names}: not supported by prunekit yet; remove {'it' if len(unsupported) == 1 else 'them'} "
            "(for a constrained answer, send prunekit's `format` field; see the README)",
            code="unsupported_parameter",
        )


async def _admitted(request: Request, route: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking `fn(*args)` with a place on `route` (or a 503), cancelled if the client hangs up."""
    try:
        ticket = await request.app.state.admission.enter(route, request)
    except ClientGoneError:
        return Response(status_code=499)
    return await _run_admitted(request, ticket, fn, *args)


async def _run_admitted(request: Request, ticket: Ticket, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return await run_cancellable(request, ticket, fn, *args)
    except ClientGoneError:
        return Response(status_code=499)  # nobody is left to read it; the access log records the hang-up
    finally:
        ticket.release()


@api_router.post("/v1/sql", dependencies=[Depends(require_key)], response_model=None)
async def sql(request: Request, body: SqlRequest) -> dict[str, Any] | Response:
    resources: RouterResources = request.app.state.resources

    def run() -> dict[str, Any]:
        path = resources.databases.path(body.database)
        result = resources.sql_agent().answer(body.question, path)
        out = result.to_dict()
        out.pop("db_path")  # the client named the database; the server's paths stay private
        out.update(object="sql.result", database=body.database)
        return out

    return await _admitted(request, "sql", run)


@api_router.get("/v1/sql/databases", dependencies=[Depends(require_key)])
async def sql_databases(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": request.app.state.resources.databases.names()}


@api_router.post("/v1/agents", dependencies=[Depends(require_key)], response_model=None)
async def agents(request: Request, body: AgentsRequest) -> dict[str, Any] | Response:
    from prunekit.graph_pruning import make_task, solve

    task = make_task(body.domain, body.task, body.context, tuple(body.choices))
    model, code_execution = request.app.state.model, request.app.state.settings.code_execution

    def run() -> dict[str, Any]:
        return solve(model, task, body.domain, code_execution=code_execution)

    return await _admitted(request, "agents", run)


@api_router.post("/v1/prune", dependencies=[Depends(require_key)], response_model=None)
async def prune(request: Request, body: PruneRequest) -> dict[str, Any] | Response:
    from prunekit.context_pruner import default_pruner

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

    results = await _admitted(request, "prune", run)
    if isinstance(results, Response):
        return results
    before = sum(r.tokens_before for rs in results for r in rs)
    after = sum(r.tokens_after for rs in results for r in rs)
    return {
        "object": "prune.result",
        "results": [[r.to_dict() for r in rs] for rs in results],
        "usage": {"context_tokens": before, "kept_tokens": after, "removed_tokens": before - after},
    }


@api_router.post("/v1/embeddings", dependencies=[Depends(require_key)], response_model=None)
async def embeddings(request: Request, body: EmbeddingsRequest) -> dict[str, Any] | Response:
    from prunekit.decoding.backends.embeddings import load_embedder

    texts = request_texts(body)  # cheap checks before a place is taken
    return await _admitted(request, "embeddings", lambda: embed_request(body, texts, load_embedder()))


@api_router.post("/v1/rerank", dependencies=[Depends(require_key)], response_model=None)
async def rerank(request: Request, body: RerankRequest) -> dict[str, Any] | Response:
    from prunekit.context_pruner import default_pruner

    documents = document_texts(body)

    def run() -> dict[str, Any]:
        results = default_pruner().prune(body.query, documents, threshold=body.threshold)
        return rerank_body(results, documents, body.top_n, body.return_documents)

    return await _admitted(request, "rerank", run)


@api_router.get("/v1/threads/{thread_id}")
async def get_thread(
    request: Request,
    thread_id: Annotated[str, Path(max_length=128, pattern=THREAD_ID_PATTERN)],
    owner: str = Depends(require_key),
) -> dict[str, Any]:
    graph = request.app.state.thread_graph
    snapshot = await run_in_threadpool(graph.get_state, _thread_config(owner, thread_id))
    if not snapshot.values:
        raise ApiError(404, f"thread {thread_id!r} does not exist", code="thread_not_found")
    return {"id": thread_id, "object": "thread", "messages": snapshot.values.get("messages", [])}


@api_router.delete("/v1/threads/{thread_id}")
async def delete_thread(
    request: Request,
    thread_id: Annotated[str, Path(max_length=128, pattern=THREAD_ID_PATTERN)],
    owner: str = Depends(require_key),
) -> dict[str, Any]:
    """Delete a thread and every checkpoint of it, in the caller's key namespace (OpenAI's `thread.deleted`)."""
    from prunekit.app.threads import delete_thread as delete_stored_thread

    graph = request.app.state.thread_graph
    if not await run_in_threadpool(delete_stored_thread, graph, _thread_config(owner, thread_id)):
        raise ApiError(404, f"thread {thread_id!r} does not exist", code="thread_not_found")
    return {"id": thread_id, "object": "thread.deleted", "deleted": True}


def _thread_config(owner: str, thread_id: str) -> dict[str, Any]:
    """A thread id lives in its API key's namespace: one client cannot read or extend another's conversation."""
    return {"configurable": {"thread_id": f"{owner}/{thread_id}" if owner else thread_id}}


def _check_route(resources: RouterResources, route: str, body: ChatCompletionRequest) -> None:
    """Refuse what would fail inside the graph anyway, before a stream starts: an unknown database,
    collection or an agents task the domain cannot take."""
    from prunekit.decoding import NotFoundError

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
