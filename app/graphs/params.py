"""Generation settings on their way from a request to the model: the one codec between the HTTP schema, the graphs'
state and `decoding.GenerationParams`.

In a graph's state the settings are plain data (`params`: `GenerationParams` fields, no callables), so a
checkpointer can store them and a LangGraph Studio user can type them. `request_params` turns a chat completion
request into that data, checked; `generation_params` turns it back into `GenerationParams` inside a node.

>>> params = generation_params({"max_tokens": 8, "stop": ["END"]})  # JSON gives lists; the params keep tuples
>>> params.max_tokens, params.stop, params.temperature
(8, ('END',), 0.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from prunekit.app.backends import chat_repetition_penalty
from prunekit.decoding import GenerationParams, InvalidRequestError

if TYPE_CHECKING:
    from prunekit.app.api.schemas import ChatCompletionRequest
    from prunekit.app.settings import Settings

__all__ = ["DEFAULT_MAX_TOKENS", "generation_params", "request_params"]

DEFAULT_MAX_TOKENS = 256  # when a request sets neither max_tokens nor max_completion_tokens


def request_params(body: ChatCompletionRequest, settings: Settings) -> dict[str, Any]:
    """The generation settings of a chat completion request, as graph state: OpenAI's defaults where the request
    is silent, the server's loop guard (`chat_repetition_penalty`) and its `max_tokens_limit`."""
    max_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
    limit = settings.max_tokens_limit
    if max_tokens > limit:
        raise InvalidRequestError(f"max_tokens must be at most {limit}, got {max_tokens}")
    params = GenerationParams(
        max_tokens=max_tokens,
        temperature=0.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=body.stop_tuple(),
        seed=body.seed,
        frequency_penalty=body.frequency_penalty or 0.0,
        presence_penalty=body.presence_penalty or 0.0,
        repetition_penalty=chat_repetition_penalty(settings, body.repetition_penalty, body.format),
        format=body.format,
        format_method=body.format_method,
    )  # built here, so a bad value is refused before the request takes a place in the queue
    data = asdict(params)
    data.pop("logits_processors")  # callables are not plain data; a request never sets them
    return data


def generation_params(data: Mapping[str, Any] | None) -> GenerationParams:
    """The `GenerationParams` of a graph state's `params` (absent: the defaults); a bad field or value is an
    `InvalidRequestError` that names it."""
    data = dict(data or {})
    data.pop("logits_processors", None)  # not plain data; never part of the state
    try:
        return GenerationParams(**data)
    except TypeError as exc:
        raise InvalidRequestError(f"unknown generation parameter in params: {exc}") from exc
