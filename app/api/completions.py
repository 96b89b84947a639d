"""OpenAI chat-completion bodies from the router graph's final state: the whole response, and the chunk stream.

Both carry prunekit's additions: `usage` adds, flat, what each pruning stage saved (e.g. `context_tokens_removed`,
`agent_calls_avoided`, `sql_repair_calls`), and a top-level `prunekit` object holds the route taken, the savings
and the route's details (citations, SQL and rows, the agent team). In a stream, `progress: true` adds chunks
with `choices: []` and `prunekit.progress`; the finish chunk carries the `prunekit` object.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from sse_starlette import EventSourceResponse

from prunekit.app.api.admission import ClientGoneError, Ticket, until_done_or_gone
from prunekit.app.api.errors import error_body, status_of
from prunekit.app.api.logprobs import openai_logprobs
from prunekit.decoding import Usage
from prunekit.decoding.cancel import CancelToken, cancellable
from prunekit.decoding.structured import check_json_output

__all__ = ["completion_body", "stream_completion"]

log = logging.getLogger(__name__)


def completion_body(final: dict[str, Any], completion_id: str, model_id: str) -> dict[str, Any]:
    """The `chat.completion` object of a finished graph run."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": [
            {
                "index": 0,
                "message": _message(final),
                "finish_reason": final["finish_reason"],
                "logprobs": None if final.get("logprobs") is None else _logprobs(final["logprobs"]),
            }
        ],
        "usage": _usage(final["usage"], final.get("savings")),
        "prunekit": _extension(final),
    }


def _usage(usage: dict[str, int], savings: dict[str, int] | None = None) -> dict[str, int]:
    """OpenAI's usage of a final state's `usage` (none: zero tokens) plus, flat, what each pruning stage saved
    (integers only: strict clients parse it)."""
    out = Usage(**usage).as_openai()
    out.update({k: int(v) for k, v in (savings or {}).items() if isinstance(v, int | float)})
    return out


def _message(final: dict[str, Any]) -> dict[str, Any]:
    if final.get("tool_calls"):
        return {"role": "assistant", "content": None, "tool_calls": final["tool_calls"]}
    return {"role": "assistant", "content": final["answer"]}


def _logprobs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """OpenAI's `logprobs` object of the graph's plain-data `TokenLogprob`s."""
    return openai_logprobs(items)


def _extension(final: dict[str, Any]) -> dict[str, Any]:
    """The `prunekit` object of a response: route taken, savings, the route's details, and for a constrained
    answer how the constraint was enforced (`format`)."""
    extension = {"route": final.get("route"), "savings": final.get("savings", {}), **final.get("details", {})}
    report = _format_report(final)
    if report is not None:
        extension["format"] = report
    return extension


def _format_report(final: dict[str, Any]) -> dict[str, Any] | None:
    """How a `response_format` or tools answer was enforced (`method`, `states` for Deco-G's automaton) and
    whether it complies: tool calls that parsed, or JSON valid under the schema (checked again here, with
    `jsonschema`, independently of the enforcement)."""
    output = final.get("output")
    if not output:
        return None
    report = dict(output.get("enforcement", {}))
    if final.get("tool_calls"):
        report.update(compliance=True, tool_calls=len(final["tool_calls"]))
    elif output.get("schema") is not None:
        error = check_json_output(output["schema"], final.get("answer", ""))
        report["compliance"] = error is None
        if error is not None:
            report["error"] = error
    return report


async def stream_completion(
    request: Request,
    ticket: Ticket,
    graph: Any,
    state: dict[str, Any],
    config: dict[str, Any] | None,
    completion_id: str,
    model_id: str,
    include_usage: bool,
    progress: bool,
) -> Response:
    """OpenAI chunk stream: role first, content deltas, a finish chunk, optional usage, then [DONE].

    With `progress`, the graph's progress events come as chunks with `choices: []` and `prunekit.progress`
    (off by default: clients that index `choices[0]` of every chunk would break on them).

    Events are awaited up to the first one the client is sent (a text delta, or a progress event when asked
    for) before the response starts, so a request that fails before then (e.g. a prompt longer than the
    model's context, an agents task the domain cannot take) still gets a proper 4xx, not a broken stream.

    The stream owns `ticket`: the graph runs under its cancel token, a hang-up (before the first event, or
    mid-stream) cancels it, and the place is given back when the stream ends, however it ends.
    """
    token = ticket.token
    graph_events = graph.stream(state, config, stream_mode=["custom", "values"])
    events = iterate_in_threadpool(_UnderToken(token, graph_events))
    buffered: list[Any] = []
    try:
        await _until_first_event(request, token, events, buffered, progress)
    except ClientGoneError:
        ticket.release()
        return Response(status_code=499)
    except BaseException:
        token.cancel("the stream did not start")
        ticket.release()
        raise
    chunks = _Chunks(completion_id, model_id, int(time.time()))
    body = _sse_events(_replay(buffered, events), chunks, ticket, include_usage=include_usage, progress=progress)
    return EventSourceResponse(body, ping=15)


@dataclass(frozen=True)
class _Chunks:
    """Makes the `chat.completion.chunk` server-sent events of one stream."""

    completion_id: str
    model_id: str
    created: int

    def __call__(
        self,
        delta: dict[str, Any] | None,
        finish: str | None = None,
        usage: dict[str, int] | None = None,
        extension: dict[str, Any] | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One chunk; `delta=None` gives one with `choices: []` (a progress or usage chunk)."""
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
        body: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_id,
            "choices": [] if delta is None else [choice],
        }
        if usage is not None:
            body["usage"] = usage
        if extension is not None:
            body["prunekit"] = extension
        return {"data": json.dumps(body)}


async def _sse_events(
    events: AsyncIterator[Any], chunk: _Chunks, ticket: Ticket, *, include_usage: bool, progress: bool
) -> AsyncIterator[dict[str, Any]]:
    """The stream's events from the graph's: the role, the deltas (and progress), then the finish, usage and
    [DONE]; an error after the start is reported in-band."""
    yield chunk({"role": "assistant", "content": ""})
    final: dict[str, Any] = {}
    try:
        async for mode, payload in events:
            if mode == "custom" and (payload.get("delta") or payload.get("logprobs")):
                logprobs = _logprobs(payload["logprobs"]) if payload.get("logprobs") else None
                yield chunk({"content": payload.get("delta", "")}, logprobs=logprobs)
            elif mode == "custom" and payload.get("tool_calls"):
                for delta in _tool_call_deltas(payload["tool_calls"]):
                    yield chunk(delta)
            elif mode == "custom" and progress and "progress" in payload:
                yield chunk(None, extension={"progress": payload["progress"]})
            elif mode == "values":
                final = payload
    except Exception as exc:  # the stream has started: report the error in-band, as OpenAI does
        status, kind, message = status_of(exc)
        log.error("stream %s failed with %d: %s", chunk.completion_id, status, exc)
        yield {"data": json.dumps(error_body(message, kind))}
        yield {"data": "[DONE]"}
        return
    finally:
        # A client that hangs up cancels this generator: nothing can be awaited any more, but the token stops
        # the graph's threads at their next step (the model's slot comes free), and the place goes back.
        ticket.token.cancel("the stream ended")
        ticket.release()
    extension = await run_in_threadpool(_extension, final)  # may check the answer against a client's schema
    yield chunk({}, final.get("finish_reason", "stop"), extension=extension)
    if include_usage:
        yield chunk(None, usage=_usage(final.get("usage", {}), final.get("savings")))
    yield {"data": "[DONE]"}


def _tool_call_deltas(calls: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Tool calls as OpenAI streams them: per call, a delta with its index, id, type and name (arguments empty),
    then one with its arguments; clients join the deltas of each index."""
    for index, call in enumerate(calls):
        function = call["function"]
        yield {
            "tool_calls": [
                {
                    "index": index,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": function["name"], "arguments": ""},
                }
            ]
        }
        yield {"tool_calls": [{"index": index, "function": {"arguments": function["arguments"]}}]}


async def _until_first_event(
    request: Request, token: CancelToken, events: AsyncIterator[Any], buffered: list[Any], progress: bool
) -> None:
    """Read graph events into `buffered` up to the first one the client is sent, racing the client's hang-up
    (RAG, SQL and agent routes work for a while before their first token)."""

    async def fill() -> None:
        while (event := await anext(events, None)) is not None:
            buffered.append(event)
            mode, payload = event
            if mode == "custom" and (
                payload.get("delta") or payload.get("tool_calls") or (progress and "progress" in payload)
            ):
                return

    work = asyncio.ensure_future(fill())
    await until_done_or_gone(request, token, work)
    work.result()  # a failure before the first event: a proper 4xx/5xx


class _UnderToken:
    """An iterator whose every step runs under the request's cancel token (each step may run in another worker
    thread, and LangGraph's node threads copy the context of the step that starts them)."""

    def __init__(self, token: CancelToken, iterator: Iterator[Any]) -> None:
        self._token, self._iterator = token, iterator

    def __iter__(self) -> _UnderToken:
        return self

    def __next__(self) -> Any:
        with cancellable(self._token):
            return next(self._iterator)


async def _replay(buffered: list[Any], rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    for event in buffered:
        yield event
    async for event in rest:
        yield event
