"""OpenAI tool calls on a local model: the tools shown to the model, the grammar its answer is held to, and the
answer read back as calls.

The model sees the tools as JSON in its system prompt and calls them by writing
`<tool_call>[{"name": ..., "arguments": {...}}]</tool_call>` (the envelope SmolLM2's and Qwen2.5's chat training
use). `tool_call_grammar` holds the answer to that envelope with llguidance, each call's `arguments` to its
function's JSON Schema, and the name to the declared functions, so every call parses and validates:

- `tool_choice: "auto"`: a plain text answer OR calls. Both branches stay open at the first token, so the choice is
  the model's own probability, not forced; a text answer only may not start with `<`.
- `"required"`: one or more calls; a named function: calls of that function only.
- `parallel_tool_calls: false`: exactly one call.

History: an assistant turn's `tool_calls` become that envelope again and a `role: "tool"` result becomes a
`<tool_response>` block in a user turn, so a conversation round-trips through models whose chat templates know
only system, user and assistant.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prunekit.decoding.decog.errors import FormatSpecError
from prunekit.decoding.structured.json_output import ANY_OBJECT, check_schema, closed_objects

__all__ = [
    "CALL_CLOSE",
    "CALL_OPEN",
    "MAX_TOOLS",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "parse_tool_calls",
    "tool_call_grammar",
    "tool_calls_text",
    "tool_choice_of",
    "tool_result_text",
    "tools_of",
    "tools_prompt",
]

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
MAX_TOOLS = 64
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names
_NO_WHITESPACE = {"x-guidance": {"whitespace_flexible": False}}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolChoice:
    mode: str  # "auto", "none", "required" or "function"
    name: str | None = None  # the function, for mode "function"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI returns it

    def as_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def tools_of(tools: Sequence[Any]) -> list[Tool]:
    """The functions of an OpenAI `tools` list, checked: each a `{"type": "function", "function": {"name", ...}}`
    with a valid name (distinct) and a valid JSON Schema for its parameters."""
    if not isinstance(tools, Sequence) or not tools:
        raise FormatSpecError("tools must be a non-empty list")
    if len(tools) > MAX_TOOLS:
        raise FormatSpecError(f"at most {MAX_TOOLS} tools are taken, got {len(tools)}")
    out: list[Tool] = []
    for i, item in enumerate(tools):
        function = item.get("function") if isinstance(item, Mapping) else None
        if not isinstance(item, Mapping) or item.get("type") != "function" or not isinstance(function, Mapping):
            raise FormatSpecError(f'tools[{i}] must be {{"type": "function", "function": {{"name": ...}}}}')
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise FormatSpecError(f"tools[{i}].function.name must be 1-64 letters, digits, '_' or '-'")
        description = function.get("description") or ""
        if not isinstance(description, str):
            raise FormatSpecError(f"tools[{i}].function.description must be a string")
        parameters = function.get("parameters") or ANY_OBJECT
        check_schema(parameters)
        out.append(Tool(name, description, parameters))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise FormatSpecError(f"tool names must be distinct, got {names}")
    return out


def tool_choice_of(value: Any, tools: Sequence[Tool]) -> ToolChoice:
    """OpenAI's `tool_choice` (absent: "auto" when there are tools)."""
    if value is None or value in ("auto", "none", "required"):
        return ToolChoice(value or "auto")
    function = value.get("function") if isinstance(value, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(value, Mapping) or value.get("type") != "function" or not isinstance(name, str):
        raise FormatSpecError('tool_choice must be "auto", "none", "required" or {"type": "function", ...}')
    if name not in {t.name for t in tools}:
        raise FormatSpecError(f"tool_choice names {name!r}, which is not one of the request's tools")
    return ToolChoice("function", name)


def tools_prompt(tools: Sequence[Tool], choice: ToolChoice) -> str:
    """The system-prompt text that shows the model its tools and how to call them."""
    listed = [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools]
    must = {
        "auto": "Call a function when it helps; otherwise answer directly.",
        "required": "You must call one or more of the functions.",
        "function": f"You must call the function {choice.name}.",
    }.get(choice.mode, "")
    return (
        "You can call these functions:\n<tools>\n" + json.dumps(listed, ensure_ascii=False) + "\n</tools>\n"
        f'To call functions, reply with {CALL_OPEN}[{{"name": <function name>, "arguments": <arguments object>}}]'
        f"{CALL_CLOSE} and nothing else. {must}"
    )


def tool_call_grammar(
    tools: Sequence[Tool], choice: ToolChoice, parallel: bool = True, text_schema: dict[str, Any] | None = None
) -> str | None:
    """The llguidance grammar (Lark) an answer is held to under `choice`; None for "none" (plain text). With
    `text_schema` (a request's `response_format`), a text answer under "auto" is JSON valid under it."""
    import llguidance

    if choice.mode == "none":
        return None
    callable_tools = [t for t in tools if choice.mode != "function" or t.name == choice.name]
    rules = [f"call_{i}: %json {json.dumps(_call_schema(t))}" for i, t in enumerate(callable_tools)]
    call = " | ".join(f"call_{i}" for i in range(len(callable_tools)))
    calls = '"[" call ("," call)* "]"' if parallel else '"[" call "]"'
    start = "start: text | calls" if choice.mode == "auto" else "start: calls"
    lark = "\n".join(
        [
            start,
            f"calls: {json.dumps(CALL_OPEN)} {calls} {json.dumps(CALL_CLOSE)}",
            f"call: {call}",
            *rules,
            _text_rule(text_schema),
        ]
    )
    return llguidance.LLMatcher.grammar_from_lark(lark)


def _text_rule(schema: dict[str, Any] | None) -> str:
    if schema is None:
        return r"text: /[^<][\s\S]*/"  # not `<`: the first character tells a text answer from a call
    return f"text: %json {json.dumps({**closed_objects(schema), **_NO_WHITESPACE})}"


def _call_schema(tool: Tool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": closed_objects(tool.parameters)},
        "required": ["name", "arguments"],
        "additionalProperties": False,
        **_NO_WHITESPACE,
    }


def parse_tool_calls(text: str) -> list[ToolCall] | None:
    """The calls in an answer written in the envelope; None when the answer is plain text (or was cut short)."""
    stripped = text.strip()
    if not (stripped.startswith(CALL_OPEN) and stripped.endswith(CALL_CLOSE)):
        return None
    try:
        items = json.loads(stripped[len(CALL_OPEN) : -len(CALL_CLOSE)])
    except json.JSONDecodeError:
        return None
    if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in items):
        return None
    return [
        ToolCall(f"call_{uuid.uuid4().hex[:24]}", i["name"], json.dumps(i.get("arguments", {}), ensure_ascii=False))
        for i in items
    ]


def tool_calls_text(tool_calls: Sequence[Mapping[str, Any]]) -> str:
    """An assistant turn's OpenAI `tool_calls` written back in the envelope the model produced them in."""
    items = []
    for call in tool_calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise FormatSpecError("an assistant message's tool_calls must each have function.name and arguments")
        arguments = function.get("arguments") or "{}"
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError:
            raise FormatSpecError(f"the arguments of tool call {function['name']!r} are not JSON") from None
        items.append({"name": function["name"], "arguments": parsed})
    return CALL_OPEN + json.dumps(items, ensure_ascii=False) + CALL_CLOSE


def tool_result_text(content: str, tool_call_id: str | None = None) -> str:
    """A `role: "tool"` message's content as the user-turn block the model reads it in."""
    tag = f'<tool_response id="{tool_call_id}">' if tool_call_id else "<tool_response>"
    return f"{tag}\n{content}\n</tool_response>"
