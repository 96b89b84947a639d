"""`OpenAIModel`: any OpenAI-compatible chat server (vLLM, Ollama, llama.cpp server, OpenAI, prunekit itself).

Retries: connection errors, 429 and 5xx are retried with exponential backoff (a 429's `Retry-After`
is honoured, capped), up to `max_retries` times, and only before the first streamed token reaches
the caller: once text has been shown, a retry would repeat it. Everything else raises a specific
`BackendError` at once.

A stream that ends without a `finish_reason` was cut by the server, not finished (llama-cpp-python's server does
this to a stream when a newer request arrives, its default `interrupt_requests`): it is retried once when no text
has reached the caller yet, else it raises `BackendProtocolError` (HTTP 502 in the service); never an empty answer
reported as a success. A server that sends no `usage` gets one counted here: completion tokens as the number of
streamed content deltas (servers stream one token per delta), prompt tokens by `count_tokens` over the messages.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx

from prunekit.decoding.cancel import check_cancelled
from prunekit.decoding.errors import (
    BackendConnectionError,
    BackendError,
    BackendHTTPError,
    BackendProtocolError,
    BackendTimeoutError,
    InvalidRequestError,
)
from prunekit.decoding.types import ChatChunk, ChatResult, GenerationParams, Usage, normalize_messages

__all__ = ["OpenAIModel", "estimate_tokens"]

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S = 30.0
_CUT_RETRIES = 1  # a cut stream is retried once: a server that cuts every stream is broken, not busy
_PIECE = re.compile(r"\w+|[^\w\s]")
_MESSAGE_OVERHEAD_TOKENS = 4  # role and template markers around each message, as chat templates add them


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token count for servers that report no usage: words and punctuation marks (BPE
    vocabularies hold most English words whole and split punctuation off).

    >>> estimate_tokens("Hello, world!")
    4
    """
    return len(_PIECE.findall(text))


class _StreamCutError(BackendProtocolError):
    """The server ended a stream without a finish_reason: it cut the answer."""


class OpenAIModel:
    """Chat through an OpenAI-compatible HTTP API.

    >>> def server(request):  # a stand-in for the server (vLLM, Ollama, ...): `transport` is for tests
    ...     return httpx.Response(200, json={"choices": [{"message": {"content": "Hello!"}, "finish_reason": "stop"}],
    ...                                      "usage": {"prompt_tokens": 9, "completion_tokens": 2}})
    >>> model = OpenAIModel("http://127.0.0.1:8000/v1", model="prunekit-chat", transport=httpx.MockTransport(server))
    >>> result = model.chat([{"role": "user", "content": "Hi"}])
    >>> result.text, result.usage
    ('Hello!', Usage(prompt_tokens=9, completion_tokens=2, calls=0, seconds=0.0))
    >>> model.close()
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        count_tokens: Callable[[str], int] = estimate_tokens,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidRequestError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.count_tokens = count_tokens  # only for servers that report no usage
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    # ----------------------------------------------------------------- ChatModel
    def chat(self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None = None) -> ChatResult:
        body = self._body(messages, params, stream=False)
        for attempt in self._attempts():
            check_cancelled()  # the call itself is bounded by the client's timeout
            with attempt:
                response = self._client.post("/chat/completions", json=body)
                _raise_for_status(response)
                result = _parse_completion(response, fallback_model=self.name)
                if result.usage.total_tokens == 0:  # the server reported none: count here
                    usage = Usage(self._prompt_tokens(body), self.count_tokens(result.text) if result.text else 0)
                    result = dataclasses.replace(result, usage=usage)
                return result
        raise AssertionError("unreachable: _attempts raises on the last failure")

    def stream(
        self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None = None
    ) -> Iterator[ChatChunk]:
        body = self._body(messages, params, stream=True)
        return self._stream(body)

    def _stream(self, body: dict[str, Any]) -> Iterator[ChatChunk]:
        for attempt in self._attempts():
            check_cancelled()
            with attempt, self._client.stream("POST", "/chat/completions", json=body) as response:
                _raise_for_status(response)
                # errors before the first text (a cut stream included) are retried; `attempt.committed` after it
                yield from _chunks_from_events(response.iter_lines(), attempt, lambda: self._prompt_tokens(body))
                return

    def _prompt_tokens(self, body: dict[str, Any]) -> int:
        """The prompt's tokens counted here, for a server that reports no usage."""
        messages = body["messages"]
        return sum(self.count_tokens(m["content"]) + _MESSAGE_OVERHEAD_TOKENS for m in messages)

    # ----------------------------------------------------------------- helpers
    def _body(
        self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None, stream: bool
    ) -> dict[str, Any]:
        params = params or GenerationParams()
        if params.logits_processors or params.format is not None:
            raise InvalidRequestError("logits processors and format guidance run only on local backends, not over HTTP")
        if params.grammar is not None:
            raise InvalidRequestError(
                "grammar is enforced only by the local backends, not over HTTP: use an in-process backend, or send "
                "the server's own structured-output field to it directly"
            )
        if params.logprobs or params.top_logprobs > 0:
            raise InvalidRequestError(
                "logprobs and top_logprobs come only from the local backends, not over HTTP: use an in-process backend"
            )
        body: dict[str, Any] = {
            "model": self.name,
            "messages": normalize_messages(messages),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": stream,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.frequency_penalty:
            body["frequency_penalty"] = params.frequency_penalty
        if params.presence_penalty:
            body["presence_penalty"] = params.presence_penalty
        if params.repetition_penalty is not None:  # vLLM's extra field, only when asked for: OpenAI's API 400s on it
            body["repetition_penalty"] = params.repetition_penalty
        if params.upstream_fields:  # response_format, tools, ...: the server enforces them
            body.update(params.upstream_fields)
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _attempts(self) -> Iterator[_Attempt]:
        cuts_left = [min(_CUT_RETRIES, self.max_retries)]  # shared by the attempts of one call
        for number in range(self.max_retries + 1):
            attempt = _Attempt(last=number == self.max_retries, cuts_left=cuts_left)
            yield attempt
            if attempt.succeeded:
                return
            delay = attempt.retry_after if attempt.retry_after is not None else self.backoff_s * 2**number
            log.warning(
                "backend call failed (%s); retry %d/%d in %.1f s", attempt.error, number + 1, self.max_retries, delay
            )
            time.sleep(delay)


class _Attempt:
    """One try of a request: a context manager that decides whether its failure may be retried."""

    def __init__(self, last: bool, cuts_left: list[int]) -> None:
        self.last = last
        self.cuts_left = cuts_left
        self.committed = False  # set once output reached the caller: never retry after that
        self.succeeded = False
        self.error: BaseException | None = None
        self.retry_after: float | None = None

    def __enter__(self) -> _Attempt:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            self.succeeded = True
            return False
        error = _translate(exc)
        retryable = isinstance(error, BackendConnectionError | BackendTimeoutError) or (
            isinstance(error, BackendHTTPError) and error.status_code in _RETRY_STATUS
        )
        if isinstance(error, _StreamCutError):
            retryable = self.cuts_left[0] > 0
            if retryable and not self.committed:
                self.cuts_left[0] -= 1
        if not retryable or self.last or self.committed or isinstance(exc, GeneratorExit):
            if error is exc:
                return False
            raise error from exc
        self.error = error
        self.retry_after = getattr(exc, "retry_after", None)
        return True  # swallow: the loop tries again


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return BackendTimeoutError(f"backend did not answer in time: {exc}")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.RemoteProtocolError | httpx.ReadError):
        return BackendConnectionError(f"cannot reach the backend: {exc}")
    if isinstance(exc, httpx.HTTPError):
        return BackendError(f"HTTP error talking to the backend: {exc}")
    return exc


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    response.read()
    try:
        message = response.json()["error"]["message"]
    except Exception:  # any non-OpenAI error body: show its start
        message = response.text[:300]
    retry_after = None
    if "retry-after" in response.headers:
        try:
            retry_after = min(float(response.headers["retry-after"]), _MAX_RETRY_AFTER_S)
        except ValueError:
            retry_after = None
    raise BackendHTTPError(response.status_code, message, retry_after=retry_after)


def _parse_completion(response: httpx.Response, fallback_model: str) -> ChatResult:
    try:
        data = response.json()
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        usage = data.get("usage") or {}
        calls = choice["message"].get("tool_calls")
        return ChatResult(
            text=text,
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            model=data.get("model", fallback_model),
            tool_calls=tuple(_whole_call(c) for c in calls) if calls else None,
        )
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BackendProtocolError(f"backend sent a malformed completion: {response.text[:200]!r}") from exc


def _next_event(lines: Iterator[str]) -> dict[str, Any] | None:
    """The next SSE `data:` payload as JSON; None at `[DONE]` or where the stream ends without it."""
    for line in lines:
        if not line or line.startswith(":"):
            continue  # blank separators and SSE comments (keep-alives)
        if not line.startswith("data:"):
            if line.startswith(("event:", "id:", "retry:")):
                continue
            raise BackendProtocolError(f"malformed SSE line from the backend: {line[:200]!r}")
        payload = line[5:].strip()
        if payload == "[DONE]":
            return None
        try:
            event = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise BackendProtocolError(f"backend sent invalid JSON in the stream: {payload[:200]!r}") from exc
        if not isinstance(event, dict):
            raise BackendProtocolError(f"backend sent a non-object stream event: {payload[:200]!r}")
        if "error" in event:
            raise BackendError(f"backend reported an error mid-stream: {event['error']}")
        return event
    return None


def _chunks_from_events(
    lines: Iterator[str], attempt: _Attempt, prompt_tokens: Callable[[], int]
) -> Iterator[ChatChunk]:
    """The stream's text deltas, then a last chunk with the finish reason and usage. A stream that ends without a
    finish reason raises `_StreamCutError` (retryable until `attempt.committed`, set at the first text)."""
    finish: str | None = None
    usage: Usage | None = None
    deltas = 0
    calls = _CallPieces()
    event = _next_event(lines)
    while event is not None:
        try:
            if event.get("usage"):
                usage = Usage(int(event["usage"]["prompt_tokens"]), int(event["usage"]["completion_tokens"]))
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                for piece in delta.get("tool_calls") or []:
                    attempt.committed = True
                    calls.add(piece)
                text = delta.get("content") or ""
                if text:
                    check_cancelled()  # closing the upstream stream (on the way out) ends its generation too
                    attempt.committed = True
                    deltas += 1
                    yield ChatChunk(text)
                finish = choice.get("finish_reason") or finish
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BackendProtocolError(f"backend sent a malformed stream event: {event!r:.200}") from exc
        event = _next_event(lines)
    if finish is None:
        shown = f"after {deltas} streamed pieces of text" if deltas else "before any text"
        raise _StreamCutError(
            f"the backend's stream ended without a finish_reason {shown}: the server cut the answer "
            "(llama-cpp-python's server cuts a stream when a newer request arrives: start it with "
            "--interrupt_requests False)"
        )
    if usage is None or usage.total_tokens == 0:  # the server reported none: count here
        usage = Usage(prompt_tokens(), deltas)
    whole = calls.whole()
    yield ChatChunk("", finish_reason="length" if finish == "length" else "stop", usage=usage, tool_calls=whole)


def _whole_call(call: Mapping[str, Any]) -> dict[str, Any]:
    """A tool call in OpenAI's shape, as the server sent it (a missing id is made up: clients key results by it)."""
    function = call["function"]
    return {
        "id": str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}"),
        "type": "function",
        "function": {"name": str(function["name"]), "arguments": str(function.get("arguments") or "")},
    }


class _CallPieces:
    """Streamed `delta.tool_calls` pieces, joined by `index` into whole calls (OpenAI streams a call's id and name
    first, then its arguments in pieces; llama-cpp-python's server repeats the name in every piece)."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, piece: Mapping[str, Any]) -> None:
        call = self._calls.setdefault(int(piece.get("index", 0)), {"function": {"name": "", "arguments": ""}})
        if piece.get("id"):
            call["id"] = piece["id"]
        function = piece.get("function") or {}
        if function.get("name") and not call["function"]["name"]:  # whole, once (some servers repeat it)
            call["function"]["name"] = function["name"]
        call["function"]["arguments"] += function.get("arguments") or ""

    def whole(self) -> tuple[dict[str, Any], ...] | None:
        if not self._calls:
            return None
        return tuple(_whole_call(self._calls[index]) for index in sorted(self._calls))
