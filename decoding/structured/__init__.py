"""Structured outputs for OpenAI's fields: `response_format` JSON (Deco-G where its automaton reaches, an
llguidance hard mask beyond) and tool calls (`tools`, `tool_choice`, `parallel_tool_calls`).

The request side turns the fields into `GenerationParams.format` / `.grammar` (`json_output`, `tools`); the local
backends' `FormatGuide` picks the enforcement (`decoding.decog.guided`) and `grammar_mask` masks tokens.
"""

from prunekit.decoding.structured.json_output import JsonOutputSpec, check_json_output, json_output_spec
from prunekit.decoding.structured.tools import (
    Tool,
    ToolCall,
    ToolChoice,
    parse_tool_calls,
    tool_call_grammar,
    tool_calls_text,
    tool_choice_of,
    tool_result_text,
    tools_of,
    tools_prompt,
)

__all__ = [
    "JsonOutputSpec",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "check_json_output",
    "json_output_spec",
    "parse_tool_calls",
    "tool_call_grammar",
    "tool_calls_text",
    "tool_choice_of",
    "tool_result_text",
    "tools_of",
    "tools_prompt",
]
