"""`prunekit eval schemas`: JSON Schema coverage and compliance on JSONSchemaBench (Geng et al. 2025, arXiv
2501.10868), prunekit beside the mask libraries alone.

Per subset (`<subset>.<metric>`, and `all.<metric>` over every schema):

- Coverage, every schema of the sample, each engine under the same time budget `compile_timeout_s`:
  - `prunekit_accepted`: what the service does with a `response_format` json_schema: `json_output_spec` (schema
    checks, llguidance grammar, Deco-G format where the schema is a flat object) and `FormatGuide.resolve` over the
    embedded model's vocabulary (Deco-G's automaton compiled in a child killed at the budget, else llguidance's
    grammar checked under its fuel limits). `decog` / `llguidance`: how many accepted schemas went which way;
    `prunekit_compile_ms_p50` / `_max`: the wall time of those steps;
  - `llguidance_accepted`: llguidance alone on the unmodified schema (`grammar_from_json_schema`, then the same
    grammar check), no prunekit schema checks, no Deco-G;
  - `outlines_accepted`: outlines-core alone, `build_regex_from_schema` and its token `Index` over the same
    vocabulary, in a child process killed at the budget (`eval.outlines_compile`); `outlines_compile_ms_p50`.
- Compliance, a seeded sample of `generate` schemas per subset among those prunekit accepted: the embedded model
  asked for a JSON instance of the schema (greedy, `max_tokens`), under each engine that accepted the schema;
  `<engine>_valid`: share of outputs that parse and validate with `jsonschema` (`check_json_output`, against the
  original schema), `<engine>_generated`: how many outputs that share is over, `<engine>_cut`: outputs that hit
  `max_tokens` (a hard mask does not know the budget, so those can stop mid-structure), `<engine>_valid_ended`:
  the valid share among the outputs that ended on their own (what the enforcement itself guarantees).
  `over_budget`: sampled schemas whose shortest valid answer is longer than `max_tokens` (measured by the budget
  mask's closing walk from the empty answer, a greedy search, so an upper bound): no engine can answer those in
  budget, and `<engine>_valid_in_budget` is the valid share over the other schemas' outputs.

Wall times come from a shared machine: treat them as indicative.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import llguidance

from prunekit.decoding import GenerationParams, LocalBackend, model_name, require_local
from prunekit.decoding.decog.bounded import CompileBudget
from prunekit.decoding.decog.errors import FormatSpecError
from prunekit.decoding.errors import PrunekitError
from prunekit.decoding.structured import check_json_output, json_output_spec
from prunekit.decoding.structured.closing import LexState, closing_tokens, token_moves
from prunekit.decoding.structured.grammar_mask import GrammarMaskProcessor, check_grammar, grammar_tokenizer
from prunekit.decoding.structured.json_output import GRAMMAR_OPTIONS
from prunekit.eval.harness import EvalResult, progress_bar, run_concurrently
from prunekit.eval.jsonschemabench import DEFAULT_DATA, SchemaItem, load_schemas
from prunekit.eval.outlines_compile import OutlinesCompiler

__all__ = [
    "DEFAULT_COMPILE_TIMEOUT_S",
    "DEFAULT_DATA",
    "DEFAULT_GENERATE",
    "DEFAULT_LIMIT_PER_SUBSET",
    "ENGINES",
    "evaluate_schemas",
    "instance_messages",
]

DEFAULT_LIMIT_PER_SUBSET = 10  # 100 schemas: with `generate` 2, about 10 minutes on 2 shared cores
DEFAULT_GENERATE = 2
DEFAULT_COMPILE_TIMEOUT_S = 5.0
DEFAULT_MAX_TOKENS = 256
SHORTEST_WALK_LIMIT = 4096  # how far the shortest answer is looked for (a mask per token: a few seconds at most)
PROMPT_SCHEMA_CHARS = 3000  # the schema as the prompt shows it (~1k tokens); the constraint is the whole schema
ENGINES = ("prunekit", "llguidance", "outlines")
_WARM_UP = {"type": "object", "properties": {"ok": {"type": "boolean"}}}


def instance_messages(schema: Any) -> list[dict[str, str]]:
    """The prompt: ask for one JSON value valid under `schema` (shown compact, cut at `PROMPT_SCHEMA_CHARS`)."""
    text = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    if len(text) > PROMPT_SCHEMA_CHARS:
        text = text[:PROMPT_SCHEMA_CHARS] + " ...(cut)"
    ask = "Write one JSON value valid under this JSON Schema. Reply with the JSON only."
    return [{"role": "user", "content": f"{ask}\n\nSchema: {text}"}]


# --------------------------------------------------------------------------- coverage
def _timed(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`fn()`'s verdict with `seconds`; a refusal is `{"accepted": False, "error": ...}`."""
    started = time.perf_counter()
    try:
        verdict = {"accepted": True, **fn()}
    except (PrunekitError, ValueError, TypeError, RuntimeError, RecursionError) as exc:
        verdict = {"accepted": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {**verdict, "seconds": time.perf_counter() - started}


def _prunekit(guide: Any, schema: Any, max_tokens: int) -> dict[str, Any]:
    spec = json_output_spec({"type": "json_schema", "json_schema": {"name": "schema", "schema": schema}})
    assert spec is not None
    params = GenerationParams(max_tokens=max_tokens, format=spec.decog_format, grammar=spec.grammar)
    resolved, report = guide.resolve(params)
    return {"method": report["method"], "states": report.get("states"), "params": resolved}


def _llguidance(vocab: Any, schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise FormatSpecError("llguidance takes a JSON object as a schema")
    grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=GRAMMAR_OPTIONS)
    check_grammar(grammar, vocab)
    return {"grammar": grammar}


def _coverage(item: SchemaItem, guide: Any, compiler: OutlinesCompiler, max_tokens: int) -> dict[str, Any]:
    """Each engine's verdict on one schema (what generation needs, `params` / `grammar` / `regex`, kept aside)."""
    outlines = compiler.compile(item.schema)
    return {
        "prunekit": _timed(lambda: _prunekit(guide, item.schema, max_tokens)),
        "llguidance": _timed(lambda: _llguidance(guide.vocab, item.schema)),
        "outlines": {
            "accepted": outlines.accepted,
            "seconds": outlines.seconds,
            "error": outlines.error,
            "regex": outlines.regex,
        },
    }


# --------------------------------------------------------------------------- compliance
def _processors(engine: str, verdicts: dict[str, Any], vocab: Any) -> GenerationParams | tuple[Any, ...]:
    """The resolved params (prunekit: the service's own path) or the mask processor of a library alone."""
    if engine == "prunekit":
        return verdicts["prunekit"]["params"]
    if engine == "llguidance":
        return (GrammarMaskProcessor(verdicts["llguidance"]["grammar"], vocab),)
    from prunekit.eval.outlines_mask import SchemaRegexMask

    return (SchemaRegexMask(verdicts["outlines"]["regex"], vocab),)


def _generate(model: LocalBackend, item: SchemaItem, engine: str, verdicts: dict[str, Any], max_tokens: int) -> dict:
    """One output under `engine` and what `jsonschema` says of it."""
    made = _processors(engine, verdicts, model.vocabulary())
    if isinstance(made, GenerationParams):
        params = made
    else:
        params = GenerationParams(max_tokens=max_tokens, logits_processors=made)
    started = time.perf_counter()
    result = model.chat(instance_messages(item.schema), params)
    problem = check_json_output(item.schema, result.text)
    return {
        "valid": problem is None,
        "problem": problem,
        "finish_reason": result.finish_reason,
        "tokens": result.usage.completion_tokens,
        "seconds": time.perf_counter() - started,
        "text": _head_and_tail(result.text),
    }


def shortest_answer_tokens(vocab: Any, schema: Any, limit: int = SHORTEST_WALK_LIMIT) -> int | None:
    """Tokens of the shortest valid answer to `schema` the budget mask's closing walk finds from an empty answer
    (end-of-sequence included), or None past `limit`; greedy, so an upper bound on the true shortest."""
    spec = json_output_spec({"type": "json_schema", "json_schema": {"name": "schema", "schema": schema}})
    assert spec is not None
    matcher = llguidance.LLMatcher(grammar_tokenizer(vocab), spec.grammar)
    way = closing_tokens(matcher, token_moves(vocab), LexState(), limit=limit)
    return None if way is None else len(way) + 1


def _head_and_tail(text: str, keep: int = 300) -> str:
    """An output as the record keeps it: where it started and where it stopped (a cut answer fails at its end)."""
    return text if len(text) <= 2 * keep else f"{text[:keep]} ...({len(text) - 2 * keep} chars)... {text[-keep:]}"


def _generation_jobs(
    items: Sequence[SchemaItem], verdicts: Sequence[dict[str, Any]], generate: int, seed: int
) -> list[tuple[int, str]]:
    """(item index, engine) pairs: per subset a seeded sample of `generate` schemas prunekit accepted, each under
    every engine that accepted it too."""
    rng = random.Random(seed)
    jobs: list[tuple[int, str]] = []
    for subset in dict.fromkeys(item.subset for item in items):
        accepted = [i for i, item in enumerate(items) if item.subset == subset and verdicts[i]["prunekit"]["accepted"]]
        for i in sorted(rng.sample(accepted, min(generate, len(accepted)))):
            jobs += [(i, engine) for engine in ENGINES if verdicts[i][engine]["accepted"]]
    return jobs


# --------------------------------------------------------------------------- figures
def _share(values: Sequence[bool]) -> float:
    return sum(values) / len(values)


def _subset_metrics(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {"schemas": float(len(records))}
    for engine in ENGINES:
        out[f"{engine}_accepted"] = _share([r[engine]["accepted"] for r in records])
    methods = [r["prunekit"].get("method") for r in records if r["prunekit"]["accepted"]]
    out["decog"] = float(sum(m not in (None, "llguidance") for m in methods))
    out["llguidance"] = float(methods.count("llguidance"))
    for engine in ("prunekit", "outlines"):
        times = [r[engine]["seconds"] * 1000 for r in records if r[engine]["accepted"]]
        if times:
            out[f"{engine}_compile_ms_p50"] = statistics.median(times)
            out[f"{engine}_compile_ms_max"] = max(times)
    out["over_budget"] = float(sum(r.get("over_budget", False) for r in records))
    for engine in ENGINES:
        outputs = [r["generation"][engine] for r in records if engine in r.get("generation", {})]
        out[f"{engine}_generated"] = float(len(outputs))
        if outputs:
            out[f"{engine}_valid"] = _share([o.get("valid", False) for o in outputs])
            out[f"{engine}_cut"] = float(sum(o.get("finish_reason") == "length" for o in outputs))
            in_budget = [r["generation"][engine] for r in records
                         if engine in r.get("generation", {}) and not r.get("over_budget")]  # fmt: skip
            if in_budget:
                out[f"{engine}_valid_in_budget"] = _share([o.get("valid", False) for o in in_budget])
            ended = [o.get("valid", False) for o in outputs if o.get("finish_reason") == "stop"]
            if ended:
                out[f"{engine}_valid_ended"] = _share(ended)
    return out


def _metrics(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for subset in dict.fromkeys(r["subset"] for r in records):
        chosen = [r for r in records if r["subset"] == subset]
        metrics |= {f"{subset}.{k}": v for k, v in _subset_metrics(chosen).items()}
    return metrics | {f"all.{k}": v for k, v in _subset_metrics(records).items()}


def _record(item: SchemaItem, verdicts: dict[str, Any]) -> dict[str, Any]:
    """The JSON-safe record of one schema (no params, grammars or regexes: they are large and rebuilt at will)."""
    keep = ("accepted", "method", "states", "seconds", "error")
    record: dict[str, Any] = {"id": item.id, "subset": item.subset}
    for engine in ENGINES:
        record[engine] = {k: verdicts[engine][k] for k in keep if verdicts[engine].get(k) is not None}
    if verdicts["outlines"]["regex"] is not None:
        record["outlines"]["regex_chars"] = len(verdicts["outlines"]["regex"])
    return record


# --------------------------------------------------------------------------- the evaluation
def _coverages(items: Sequence[SchemaItem], guide: Any, timeout_s: float, max_tokens: int) -> list[dict[str, Any]]:
    """Every engine's verdict on every schema, with a progress bar."""
    _prunekit(guide, _WARM_UP, max_tokens)  # starts the compile forkserver outside every schema's deadline
    verdicts = []
    with OutlinesCompiler(guide.vocab, timeout_s) as compiler, progress_bar() as bar:
        task = bar.add_task("compiling schemas", total=len(items))
        for item in items:
            verdicts.append(_coverage(item, guide, compiler, max_tokens))
            bar.advance(task)
    return verdicts


def evaluate_schemas(
    model: LocalBackend,
    data: str | Path = DEFAULT_DATA,
    *,
    limit_per_subset: int | None = DEFAULT_LIMIT_PER_SUBSET,
    generate: int = DEFAULT_GENERATE,
    compile_timeout_s: float = DEFAULT_COMPILE_TIMEOUT_S,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    seed: int = 0,
    concurrency: int = 4,
    subsets: Sequence[str] | None = None,
) -> EvalResult:
    """Coverage of a seeded sample of `limit_per_subset` schemas per subset, then compliance of `generate` outputs
    per subset and engine (metrics: see the module docstring). `model`: a local backend (logits processors)."""
    local = require_local(model, "the JSON Schema evaluation")
    items = load_schemas(data, limit_per_subset=limit_per_subset, seed=seed, subsets=subsets)
    guide = local.format_guide()
    before, guide.budget = guide.budget, CompileBudget(timeout_s=compile_timeout_s)  # the stated budget
    try:
        verdicts = _coverages(items, guide, compile_timeout_s, max_tokens)
        records = [_record(item, v) for item, v in zip(items, verdicts, strict=True)]
        jobs = _generation_jobs(items, verdicts, generate, seed)
        outputs = run_concurrently(
            lambda job: _generate(local, items[job[0]], job[1], verdicts[job[0]], max_tokens),
            jobs,
            concurrency=concurrency,
            description="generating",
        )
    finally:
        guide.budget = before  # the model is the caller's: its service budget is left as it was
    for i in sorted({i for i, _ in jobs}):
        shortest = shortest_answer_tokens(local.vocabulary(), items[i].schema)
        records[i]["shortest_answer_tokens"] = shortest
        records[i]["over_budget"] = shortest is None or shortest > max_tokens
    for (i, engine), output in zip(jobs, outputs, strict=True):
        if isinstance(output, BaseException):
            output = {"valid": False, "error": f"{type(output).__name__}: {output}"[:300]}
        records[i].setdefault("generation", {})[engine] = output
    config = {
        "data": str(data),
        "limit_per_subset": limit_per_subset,
        "generate": generate,
        "compile_timeout_s": compile_timeout_s,
        "max_tokens": max_tokens,
        "seed": seed,
        "model": model_name(local),
        "outlines_whitespace": "none (compact JSON)",
        "subsets": list(subsets or []),
    }
    return EvalResult("schemas", config, _metrics(records), records)
