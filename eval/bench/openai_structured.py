"""`prunekit bench openai-structured`: the service's structured outputs as clients see them, through the official
`openai` client (the service is the caller's: `eval` never starts `app`; the CLI does and passes its URL).

- `json_schema`: `requests` chat completions over `schemas` JSONSchemaBench schemas (taken in turn, each asked with
  a different wording), `response_format` json_schema with `strict: true`; `json_schema.valid`: share of replies
  whose content parses and validates with `jsonschema` against the schema sent; `json_schema.refused`: 4xx
  replies; `json_schema.decog` / `.llguidance`: how the service enforced them (`prunekit.format.method`);
  `json_schema.cut`: replies that hit `max_tokens` (a hard mask does not know the budget: those can stop
  mid-structure); `json_schema.valid_ended`: the valid share of the replies that ended on their own;
- `tools`: `tool_requests` completions with two functions and `tool_choice: "required"`; `tools.valid`: share
  whose `message.tool_calls` are one or more calls of a declared function with arguments valid under its
  parameters;
- `tools_stream`: `stream_pairs` prompts asked streamed and not; `tools_stream.equal`: share where the streamed
  `delta.tool_calls` reassemble into the same calls (names and parsed arguments, in order).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prunekit.decoding.errors import PrunekitError
from prunekit.decoding.structured import check_json_output, json_output_spec
from prunekit.decoding.structured.grammar_mask import check_grammar
from prunekit.eval.jsonschemabench import SchemaItem
from prunekit.eval.schemas import instance_messages

__all__ = ["TOOLS", "bench_openai_structured", "pick_schemas"]

MODEL = "prunekit-chat"
WORDINGS = (
    "",
    " Use realistic values.",
    " Keep it as short as the schema allows.",
    " Fill in the fields a user would expect.",
    " Use example values.",
)
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    },
]
TOOL_PROMPTS = (
    "What is the weather in Paris?",
    "Add 2 and 3.",
    "Is it raining in Tokyo right now?",
    "What is 17.5 plus 4?",
    "Weather in Rome, in fahrenheit please.",
    "Sum 120 and 45.",
    "How warm is it in Oslo?",
    "Compute 3 + 9.",
)


def pick_schemas(items: Sequence[SchemaItem], n: int, vocab: Any = None, seed: int = 0) -> list[SchemaItem]:
    """A seeded `n` of `items` that prunekit accepts as a `response_format` (`json_output_spec`, and the grammar
    check over `vocab` when given), spread over the subsets in turn. What it refuses is `eval schemas`' figure."""
    by_subset: dict[str, list[SchemaItem]] = {}
    for item in items:
        by_subset.setdefault(item.subset, []).append(item)
    rng = random.Random(seed)
    for group in by_subset.values():
        rng.shuffle(group)
    chosen: list[SchemaItem] = []
    while len(chosen) < n and any(by_subset.values()):
        for group in by_subset.values():
            while group and len(chosen) < n:
                item = group.pop()
                if _accepted(item.schema, vocab):
                    chosen.append(item)
                    break
    return chosen


def _accepted(schema: Any, vocab: Any) -> bool:
    try:
        spec = json_output_spec(_response_format(schema))
        if spec is not None and vocab is not None:
            check_grammar(spec.grammar, vocab)
    except (PrunekitError, ValueError, TypeError, RecursionError):
        return False
    return True


def _response_format(schema: Any) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "instance", "schema": schema, "strict": True}}


def _json_request(client: Any, item: SchemaItem, wording: str, max_tokens: int) -> dict[str, Any]:
    messages = instance_messages(item.schema)
    messages[-1]["content"] += wording
    try:
        reply = client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=max_tokens, response_format=_response_format(item.schema)
        )
    except Exception as exc:  # openai's APIStatusError family and transport errors: recorded, counted
        return {"id": item.id, "status": getattr(exc, "status_code", None), "error": str(exc)[:300]}
    choice = reply.choices[0]
    problem = check_json_output(item.schema, choice.message.content or "")
    report = (reply.model_extra or {}).get("prunekit", {}).get("format", {})
    return {
        "id": item.id,
        "valid": problem is None,
        "problem": problem,
        "finish_reason": choice.finish_reason,
        "method": report.get("method"),
        "compliance": report.get("compliance"),
    }


def _calls_valid(calls: Any) -> bool:
    """One or more calls, each of a declared function with arguments valid under its parameters."""
    schemas = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
    if not calls:
        return False
    return all(
        c.function.name in schemas and check_json_output(schemas[c.function.name], c.function.arguments) is None
        for c in calls
    )


def _ask_for_calls(client: Any, prompt: str, max_tokens: int, stream: bool = False) -> Any:
    """The bench's tool request: both functions offered, a call required."""
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        tools=TOOLS,
        tool_choice="required",
        max_tokens=max_tokens,
        stream=stream,
    )


def _tool_request(client: Any, prompt: str, max_tokens: int) -> dict[str, Any]:
    try:
        reply = _ask_for_calls(client, prompt, max_tokens)
    except Exception as exc:
        return {"prompt": prompt, "valid": False, "error": str(exc)[:300]}
    choice = reply.choices[0]
    calls = choice.message.tool_calls
    valid = choice.finish_reason == "tool_calls" and _calls_valid(calls)
    named = [(c.function.name, c.function.arguments) for c in calls or []]
    return {"prompt": prompt, "valid": valid, "finish_reason": choice.finish_reason, "calls": named}


def _streamed_calls(client: Any, prompt: str, max_tokens: int) -> list[tuple[str, Any]]:
    parts: dict[int, dict[str, str]] = {}
    stream = _ask_for_calls(client, prompt, max_tokens, stream=True)
    for chunk in stream:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            part = parts.setdefault(delta.index, {"name": "", "arguments": ""})
            if delta.function is not None:
                part["name"] += delta.function.name or ""
                part["arguments"] += delta.function.arguments or ""
    return [(p["name"], json.loads(p["arguments"])) for _, p in sorted(parts.items())]


def _stream_pair(client: Any, prompt: str, max_tokens: int) -> dict[str, Any]:
    try:
        whole = _ask_for_calls(client, prompt, max_tokens)
        expected = [(c.function.name, json.loads(c.function.arguments)) for c in whole.choices[0].message.tool_calls]
        streamed = _streamed_calls(client, prompt, max_tokens)
    except Exception as exc:
        return {"prompt": prompt, "equal": False, "error": str(exc)[:300]}
    return {"prompt": prompt, "equal": streamed == expected, "calls": expected}


def _parallel(fn: Callable[[Any], dict[str, Any]], jobs: Sequence[Any], concurrency: int) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(fn, jobs))


def bench_openai_structured(
    base_url: str,
    schemas: Sequence[SchemaItem],
    *,
    api_key: str = "none",
    requests: int = 100,
    tool_requests: int = 20,
    stream_pairs: int = 5,
    max_tokens: int = 256,
    concurrency: int = 4,
) -> tuple[dict[str, float], dict[str, list[dict[str, Any]]]]:
    """The figures (module docstring) and the per-request records, from the service at `base_url` (its `/v1`)."""
    import openai

    if not schemas:
        raise ValueError("give at least one schema")
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=600)
    jobs = [(schemas[i % len(schemas)], WORDINGS[(i // len(schemas)) % len(WORDINGS)]) for i in range(requests)]
    started = time.perf_counter()
    json_records = _parallel(lambda job: _json_request(client, job[0], job[1], max_tokens), jobs, concurrency)
    json_s = time.perf_counter() - started
    prompts = [TOOL_PROMPTS[i % len(TOOL_PROMPTS)] for i in range(tool_requests)]
    tool_records = _parallel(lambda p: _tool_request(client, p, max_tokens), prompts, concurrency)
    pairs = [TOOL_PROMPTS[i % len(TOOL_PROMPTS)] for i in range(stream_pairs)]
    stream_records = _parallel(lambda p: _stream_pair(client, p, max_tokens), pairs, concurrency)
    figures = _json_figures(json_records, len(schemas), json_s)
    if tool_records:
        figures["tools.requests"] = float(len(tool_records))
        figures["tools.valid"] = sum(r["valid"] for r in tool_records) / len(tool_records)
    if stream_records:
        figures["tools_stream.pairs"] = float(len(stream_records))
        figures["tools_stream.equal"] = sum(r["equal"] for r in stream_records) / len(stream_records)
    return figures, {"json_schema": json_records, "tools": tool_records, "tools_stream": stream_records}


def _share(values: list[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


def _json_figures(records: list[dict[str, Any]], schemas: int, seconds: float) -> dict[str, float]:
    answered = [r for r in records if "error" not in r]
    methods = [r.get("method") for r in answered]
    return {
        "json_schema.requests": float(len(records)),
        "json_schema.schemas": float(schemas),
        "json_schema.valid": sum(r.get("valid", False) for r in records) / len(records),
        "json_schema.refused": float(sum(400 <= (r.get("status") or 0) < 500 for r in records)),
        "json_schema.errors": float(len(records) - len(answered)),
        "json_schema.decog": float(sum(m not in (None, "llguidance") for m in methods)),
        "json_schema.llguidance": float(methods.count("llguidance")),
        "json_schema.cut": float(sum(r.get("finish_reason") == "length" for r in answered)),
        "json_schema.valid_ended": _share([r["valid"] for r in answered if r.get("finish_reason") == "stop"]),
        "json_schema.s_per_request": seconds / len(records) if records else 0.0,
    }
