"""`prunekit bench structured`: what enforcing a JSON Schema costs per generated token on the embedded model.

Two schemas written for this benchmark: `small`, a flat object of plain values (the shape Deco-G enforces, Deng,
Kung, Peng 2025, arXiv 2510.03595), and `large`, nested objects, arrays, enums, a `$ref` and bounds (llguidance
only). Methods, each on the same prompts, greedy:

- `unconstrained`: no constraint (the same prompt asks for JSON);
- `llguidance`: the schema's llguidance grammar as a hard mask that also steers to a close within `max_tokens`
  (`GrammarMaskProcessor` with the answer's budget, what the service runs beyond Deco-G's reach);
- `decog` (small only): Deco-G's HMM lookahead on the schema's format, as `FormatGuide.resolve` picks it;
- `outlines`: outlines-core's mask over `build_regex_from_schema`'s regex, the other mask library (left out when its
  index does not build within `compile_timeout_s`; `<schema>.outlines.compile_s` says how long it took: 5-7 s for
  `large` on the shared 2-core machine, against milliseconds for llguidance).

Per-token cost: a clock processor, first in every method's processor list, stamps each decoding step; the time
between two stamps is one whole step (model forward, the mask or lookahead, sampling). `<schema>.<method>.ms_per_token`
is the median over `rounds` of each round's median step (prefill and the first step, where Deco-G builds its tables,
fall outside it); `slowdown_pct` the median over rounds of that round's ratio to `unconstrained`, minus 1, in %.
Methods take turns prompt by prompt (A B C, A B C), so a neighbour's burst on a shared machine lands on all alike.
`valid` is the share of outputs that validate (`jsonschema`), `tokens` the mean output length.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any

from prunekit.decoding import GenerationParams, LocalBackend, require_local
from prunekit.decoding.decog.bounded import CompileBudget
from prunekit.decoding.structured import check_json_output, json_output_spec
from prunekit.decoding.structured.grammar_mask import GrammarMaskProcessor
from prunekit.eval.outlines_compile import OutlinesCompiler

__all__ = ["LARGE_SCHEMA", "SMALL_SCHEMA", "StepClock", "bench_structured"]

SMALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
        "member": {"type": "boolean"},
    },
    "required": ["name", "age", "city", "member"],
}
_ADDRESS = {
    "type": "object",
    "properties": {
        "street": {"type": "string", "maxLength": 40},
        "city": {"type": "string", "maxLength": 30},
        "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
        "country": {"enum": ["US", "FR", "DE", "JP"]},
    },
    "required": ["street", "city", "country"],
}
LARGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "$defs": {"address": _ADDRESS},
    "properties": {
        "order_id": {"type": "integer", "minimum": 1},
        "status": {"enum": ["new", "paid", "shipped", "cancelled"]},
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 40},
                "email": {"type": "string", "maxLength": 60},
                "shipping": {"$ref": "#/$defs/address"},
            },
            "required": ["name", "shipping"],
        },
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "maxLength": 12},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
                    "price": {"type": "number"},
                },
                "required": ["sku", "quantity", "price"],
            },
        },
        "gift": {"type": "boolean"},
    },
    "required": ["order_id", "status", "customer", "items"],
}
PROMPTS = {
    "small": (
        "Ann is 31, lives in Lyon and is a club member. Describe her as a JSON object.",
        "Describe a fictional customer as a JSON object with name, age, city and membership.",
    ),
    "large": (
        "Write a JSON order for two books shipped to Paris, France.",
        "Write a JSON order: one coffee mug, paid, shipped to Berlin.",
    ),
}


class StepClock:
    """A logits processor that changes nothing and stamps the time of every decoding step."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.stamps.append(time.perf_counter())
        return scores

    def steps_ms(self) -> list[float]:
        return [(b - a) * 1000 for a, b in zip(self.stamps, self.stamps[1:], strict=False)]


def _methods(
    model: LocalBackend, schema: dict[str, Any], max_tokens: int, compiler: OutlinesCompiler
) -> tuple[dict[str, Any], float]:
    """Method name -> a function making fresh `GenerationParams` with a given clock first among the processors; and
    the seconds outlines-core took to compile the schema (or to reach its deadline)."""
    spec = json_output_spec({"type": "json_schema", "json_schema": {"name": "bench", "schema": schema}})
    assert spec is not None
    vocab = model.vocabulary()
    methods: dict[str, Any] = {
        "unconstrained": lambda clock: GenerationParams(max_tokens=max_tokens, logits_processors=(clock,)),
        "llguidance": lambda clock: GenerationParams(
            # with the answer's budget, as the service runs it: the mask steers to a close within max_tokens
            max_tokens=max_tokens,
            logits_processors=(clock, GrammarMaskProcessor(spec.grammar, vocab, max_new_tokens=max_tokens)),
        ),
    }
    if spec.decog_format is not None:
        asked = GenerationParams(max_tokens=max_tokens, format=spec.decog_format, grammar=spec.grammar)
        resolved, report = model.format_guide().resolve(asked)
        if report["method"] == "decog":  # the guide's processor comes after the clock (`FormatGuide.apply`)
            methods["decog"] = lambda clock: replace(resolved, logits_processors=(clock,))
    outlines = compiler.compile(schema)
    if outlines.accepted:
        from prunekit.eval.outlines_mask import SchemaRegexMask

        methods["outlines"] = lambda clock: GenerationParams(
            max_tokens=max_tokens, logits_processors=(clock, SchemaRegexMask(outlines.regex, vocab))
        )
    return methods, outlines.seconds


def _round(model: LocalBackend, schema: dict[str, Any], prompts: tuple[str, ...], methods: dict[str, Any]) -> dict:
    """One round: every prompt under every method in turn; per method its median step, mean tokens, valid share."""
    steps: dict[str, list[float]] = {name: [] for name in methods}
    tokens: dict[str, list[int]] = {name: [] for name in methods}
    valid: dict[str, list[bool]] = {name: [] for name in methods}
    for prompt in prompts:
        for name, make in methods.items():
            clock = StepClock()
            result = model.chat([{"role": "user", "content": prompt}], make(clock))
            steps[name] += clock.steps_ms()
            tokens[name].append(result.usage.completion_tokens)
            valid[name].append(check_json_output(schema, result.text) is None)
    return {
        name: {
            "ms": statistics.median(steps[name]) if steps[name] else float("nan"),
            "tokens": statistics.mean(tokens[name]),
            "valid": sum(valid[name]) / len(valid[name]),
        }
        for name in methods
    }


def bench_structured(
    model: LocalBackend,
    *,
    rounds: int = 3,
    max_tokens: int = 160,
    compile_timeout_s: float = 30.0,
    schemas: dict[str, dict[str, Any]] | None = None,
) -> dict[str, float]:
    """Figures `<schema>.<method>.{ms_per_token, slowdown_pct, tokens, valid}` (see the module docstring).
    `schemas`: name -> schema, with prompts from `PROMPTS` by name (default: `small` and `large`)."""
    local = require_local(model, "the structured-output benchmark")
    guide = local.format_guide()
    before, guide.budget = guide.budget, CompileBudget(timeout_s=compile_timeout_s)
    chosen = schemas or {"small": SMALL_SCHEMA, "large": LARGE_SCHEMA}
    figures: dict[str, float] = {}
    try:
        with OutlinesCompiler(local.vocabulary(), compile_timeout_s) as compiler:
            for name, schema in chosen.items():
                methods, outlines_s = _methods(local, schema, max_tokens, compiler)
                figures[f"{name}.outlines.compile_s"] = outlines_s
                prompts = PROMPTS.get(name, PROMPTS["small"])
                _round(local, schema, prompts[:1], methods)  # warm-up: first-call allocations, Deco-G's tables
                runs = [_round(local, schema, prompts, methods) for _ in range(rounds)]
                figures |= _figures(name, runs)
    finally:
        guide.budget = before  # the model is the caller's
    return figures


def _figures(schema: str, runs: list[dict[str, dict[str, float]]]) -> dict[str, float]:
    figures: dict[str, float] = {}
    for method in runs[0]:
        key = f"{schema}.{method}"
        figures[f"{key}.ms_per_token"] = statistics.median(run[method]["ms"] for run in runs)
        if method != "unconstrained":
            ratios = [run[method]["ms"] / run["unconstrained"]["ms"] for run in runs]
            figures[f"{key}.slowdown_pct"] = 100 * (statistics.median(ratios) - 1)
        figures[f"{key}.tokens"] = statistics.mean(run[method]["tokens"] for run in runs)
        figures[f"{key}.valid"] = statistics.mean(run[method]["valid"] for run in runs)
    return figures
