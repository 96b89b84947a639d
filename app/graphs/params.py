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
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from prunekit.app.backends import chat_repetition_penalty
from prunekit.decoding import GenerationParams, InvalidRequestError
from prunekit.decoding.decog.errors import FormatSpecError
from prunekit.decoding.structured import json_output_spec, tool_call_grammar, tool_choice_of, tools_of, tools_prompt

if TYPE_CHECKING:
    from prunekit.app.api.schemas import ChatCompletionRequest
    from prunekit.app.settings import Settings

__all__ = ["DEFAULT_MAX_TOKENS", "OutputConstraint", "generation_params", "output_constraint", "request_params"]

DEFAULT_MAX_TOKENS = 256  # when a request sets neither max_tokens nor max_completion_tokens


@dataclass(frozen=True)
class OutputConstraint:
    """What a request holds its answer to: a Deco-G `format` and/or an llguidance `grammar` (both: the same
    constraint, Deco-G first; `FormatGuide.resolve`), and `output`, the graph state's plain-data note of what to
    do with the answer (`kind`: json_object, json_schema or tools; the `schema` to check it against; for tools the
    `system` prompt that shows them)."""

    format: str | None = None
    grammar: str | None = None
    output: dict[str, Any] | None = None


def output_constraint(body: ChatCompletionRequest) -> OutputConstraint:
    """The constraint of a request's `response_format`, `tools` / `tool_choice` / `parallel_tool_calls`, or
    prunekit's own `format` (exclusive with the other two); a bad value is a `FormatSpecError` (400)."""
    spec = json_output_spec(body.response_format)
    tools = tools_of(body.tools) if body.tools else []
    if not tools and body.tool_choice not in (None, "none", "auto"):
        raise FormatSpecError("tool_choice asks for a tool call, but the request has no tools")
    choice = tool_choice_of(body.tool_choice, tools) if tools else None
    calling = choice is not None and choice.mode != "none"
    if body.format is not None and (spec is not None or calling):
        raise FormatSpecError("send either prunekit's `format` or OpenAI's response_format / tools, not both")
    schema = spec.schema if spec else None
    if calling:
        grammar = tool_call_grammar(tools, choice, body.parallel_tool_calls is not False, text_schema=schema)
        return OutputConstraint(
            None, grammar, {"kind": "tools", "system": tools_prompt(tools, choice), "schema": schema}
        )
    if spec is not None:
        return OutputConstraint(spec.decog_format, spec.grammar, {"kind": spec.kind, "schema": schema})
    return OutputConstraint(body.format)


def request_params(
    body: ChatCompletionRequest, settings: Settings, constraint: OutputConstraint | None = None
) -> dict[str, Any]:
    """The generation settings of a chat completion request, as graph state: OpenAI's defaults where the request
    is silent, the server's loop guard (`chat_repetition_penalty`) and its `max_tokens_limit`, and the answer's
    `constraint` (default: the request's own, `output_constraint`)."""
    constraint = constraint or output_constraint(body)
    constrained = constraint.format or constraint.grammar
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
        repetition_penalty=chat_repetition_penalty(settings, body.repetition_penalty, constrained),
        format=constraint.format,
        format_method=body.format_method,
        grammar=constraint.grammar,
        logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs or 0,
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
