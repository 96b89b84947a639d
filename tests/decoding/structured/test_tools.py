"""Tool calls: checking OpenAI's tool fields, the grammar of a calling answer, and reading calls back."""

from __future__ import annotations

import json

import llguidance
import pytest

from prunekit.decoding.decog.errors import FormatSpecError
from prunekit.decoding.structured.tools import (
    ToolChoice,
    parse_tool_calls,
    tool_call_grammar,
    tool_calls_text,
    tool_choice_of,
    tools_of,
    tools_prompt,
)

ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]},
    },
}
NOW = {"type": "function", "function": {"name": "now"}}


def test_tools_are_checked():
    assert [t.name for t in tools_of([ADD, NOW])] == ["add", "now"]
    assert tools_of([NOW])[0].parameters == {"type": "object"}
    for bad, message in [
        ([], "non-empty"),
        ([{"type": "function"}], "tools\\[0\\]"),
        ([{"type": "function", "function": {"name": "a b"}}], "name"),
        ([ADD, ADD], "distinct"),
        ([{"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}], "JSON Schema"),
    ]:
        with pytest.raises(FormatSpecError, match=message):
            tools_of(bad)


def test_tool_choice():
    tools = tools_of([ADD, NOW])
    assert tool_choice_of(None, tools) == ToolChoice("auto")
    assert tool_choice_of({"type": "function", "function": {"name": "now"}}, tools) == ToolChoice("function", "now")
    with pytest.raises(FormatSpecError, match="not one of"):
        tool_choice_of({"type": "function", "function": {"name": "other"}}, tools)
    with pytest.raises(FormatSpecError):
        tool_choice_of("sometimes", tools)


def _matches(grammar: str, text: str) -> bool:
    """Whether llguidance's grammar accepts `text` as a whole answer (checked byte by byte via a matcher)."""
    from prunekit.decoding.structured.grammar_mask import LIMITS

    tokenizer = llguidance.LLTokenizer(_ByteTokenizer())
    matcher = llguidance.LLMatcher(tokenizer, grammar, limits=LIMITS, log_level=0)
    for byte in text.encode():
        if not matcher.consume_token(byte):
            return False
    return matcher.is_accepting()


class _ByteTokenizer(llguidance.TokenizerWrapper):
    """One token per byte, plus EOS: every text has exactly one tokenization."""

    def __init__(self) -> None:
        self.eos_token_id, self.bos_token_id, self.special_token_ids = 256, None, [256]
        self.tokens = [bytes([b]) for b in range(256)] + [b"\xff<eos>"]
        self.is_tokenizer_wrapper = True

    def __call__(self, text: str) -> list[int]:
        return list(text.encode())


@pytest.mark.parametrize(
    ("mode", "parallel", "text", "ok"),
    [
        ("auto", True, "Just text.", True),
        ("auto", True, '<tool_call>[{"name":"add","arguments":{"a":1}}]</tool_call>', True),
        ("required", True, "Just text.", False),
        (
            "required",
            True,
            '<tool_call>[{"name":"add","arguments":{"a":1}},{"name":"now","arguments":{}}]</tool_call>',
            True,
        ),
        (
            "required",
            False,
            '<tool_call>[{"name":"add","arguments":{"a":1}},{"name":"now","arguments":{}}]</tool_call>',
            False,
        ),
        ("required", True, '<tool_call>[{"name":"add","arguments":{"b":1}}]</tool_call>', False),  # schema
        ("required", True, '<tool_call>[{"name":"sub","arguments":{}}]</tool_call>', False),  # unknown name
    ],
)
def test_the_grammar_holds_answers_to_the_choice(mode, parallel, text, ok):
    tools = tools_of([ADD, NOW])
    assert _matches(tool_call_grammar(tools, ToolChoice(mode), parallel), text) is ok


def test_a_named_choice_allows_only_that_function():
    grammar = tool_call_grammar(tools_of([ADD, NOW]), ToolChoice("function", "now"))
    assert _matches(grammar, '<tool_call>[{"name":"now","arguments":{}}]</tool_call>')
    assert not _matches(grammar, '<tool_call>[{"name":"add","arguments":{"a":1}}]</tool_call>')


def test_auto_with_a_response_format_holds_text_to_the_schema():
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    grammar = tool_call_grammar(tools_of([ADD]), ToolChoice("auto"), text_schema=schema)
    assert _matches(grammar, '{"x":1}') and not _matches(grammar, "Just text.")


def test_none_has_no_grammar_and_the_prompt_lists_the_tools():
    tools = tools_of([ADD])
    assert tool_call_grammar(tools, ToolChoice("none")) is None
    assert '"name": "add"' in tools_prompt(tools, ToolChoice("required")) and "must call" in tools_prompt(
        tools, ToolChoice("required")
    )


def test_calls_round_trip_through_the_envelope():
    text = tool_calls_text([{"id": "x", "type": "function", "function": {"name": "add", "arguments": '{"a": 2}'}}])
    calls = parse_tool_calls(text)
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("add", {"a": 2})]
    assert calls[0].as_openai()["type"] == "function" and calls[0].id.startswith("call_")
    assert parse_tool_calls("plain text") is None
    assert parse_tool_calls('<tool_call>[{"name": "add", "argu') is None  # cut short by max_tokens
    with pytest.raises(FormatSpecError, match="not JSON"):
        tool_calls_text([{"function": {"name": "add", "arguments": "{oops"}}])
