"""Spider evaluation runner: methods side by side on the same model, scored by execution and exact match.

Methods (LearNAT, arXiv 2504.02327, is judged by its gain over direct prompting on the same model):

- `gold`: the gold SQL scored against itself (must be 1.0: checks the evaluator and the data);
- `single_shot`, `single_shot_demos`: `nl2sql.baselines` (one call each);
- `learnat`: the `nl2sql.agent` graph.

Metrics (`<method>.<metric>`): `ex` (execution match, test-suite-sql-eval's rules), `em` (exact-set
match), `ex_easy`/`ex_medium`/`ex_hard`/`ex_extra` (by the gold query's Spider hardness; a level with no
example is left out), and per-question means of `llm_calls`, `tokens` (prompt + completion) and
`seconds` (wall time of the method on one question; under concurrency it includes waiting for the
shared model). `config` counts the examples skipped for a missing database.

Subset (`limit`): a seeded stratified sample across databases. Each database gets a share of `limit`
proportional to its number of runnable examples (largest remainders, ties by db_id), its examples are
drawn with `random.Random(seed)` per database, and the sample keeps the split's file order. The same
`(data, limit, seed)` always gives the same questions.

Demonstrations come from `train_spider_slim.json` only (`nl2sql.retrieval`); dev is never indexed.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prunekit.decoding import model_name
from prunekit.eval.harness import EvalResult, run_concurrently
from prunekit.eval.spider.data import SpiderExample, load_spider, load_tables
from prunekit.eval.spider.exact_match import exact_match
from prunekit.eval.spider.exec_match import ExecEvaluator, GoldExecutionError
from prunekit.eval.spider.hardness import HARDNESS_LEVELS, hardness
from prunekit.nl2sql.agent import NL2SQLAgent
from prunekit.nl2sql.agent_config import AgentConfig
from prunekit.nl2sql.baselines import BASELINES, run_baseline
from prunekit.nl2sql.errors import SQLError
from prunekit.nl2sql.result import NL2SQLResult
from prunekit.nl2sql.retrieval import DemoIndex

__all__ = ["METHODS", "evaluate_examples", "evaluate_spider", "metrics_from_items", "stratified_sample"]

log = logging.getLogger(__name__)

METHODS = ("gold", "single_shot", "single_shot_demos", "learnat")


def stratified_sample(examples: Sequence[SpiderExample], limit: int, seed: int = 0) -> list[SpiderExample]:
    """`limit` examples spread over databases in proportion to their sizes (see the module doc)."""
    if limit >= len(examples):
        return list(examples)
    if limit <= 0:
        return []
    by_db: dict[str, list[SpiderExample]] = {}
    for ex in examples:
        by_db.setdefault(ex.db_id, []).append(ex)
    total = len(examples)
    quotas = {db: limit * len(items) / total for db, items in by_db.items()}
    alloc = {db: math.floor(q) for db, q in quotas.items()}
    left = limit - sum(alloc.values())
    for db in sorted(quotas, key=lambda d: (-(quotas[d] - alloc[d]), d))[:left]:
        alloc[db] += 1
    chosen: list[SpiderExample] = []
    for db in sorted(by_db):
        rng = random.Random(f"{seed}:{db}")  # per-database stream: adding a database changes no other draw
        chosen += rng.sample(by_db[db], alloc[db])
    return sorted(chosen, key=lambda e: e.index)


def _gold_result(example: SpiderExample) -> NL2SQLResult:
    return NL2SQLResult(example.question, str(example.db_path), example.query, method="gold")


def method_key(method: str, variant: str) -> str:
    """The name a method's figures go under: `learnat`, or `learnat[base]` when several variants run."""
    return f"{method}[{variant}]" if variant and method != "gold" else method


def evaluate_examples(
    examples: Sequence[SpiderExample],
    agent: NL2SQLAgent | Mapping[str, NL2SQLAgent],
    *,
    methods: Sequence[str] = METHODS,
    concurrency: int = 8,
    schemas: dict[str, Any] | None = None,
    out_items: bool = True,
    description: str = "spider",
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Run `methods` on `examples` with `agent` and score them; returns (metrics, items).

    `agent` may be a mapping variant -> agent (e.g. the model with and without an adapter): every method but
    `gold` then runs once per variant, its figures under `method[variant]` (`method_key`)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    agents = dict(agent) if isinstance(agent, Mapping) else {"": agent}
    runners: dict[str, Callable[[SpiderExample], NL2SQLResult]] = {"gold": _gold_result}
    for variant, one in agents.items():
        runners[method_key("learnat", variant)] = lambda ex, one=one: one.answer(ex.question, ex.db_path)
        for name in BASELINES:
            runners[method_key(name, variant)] = lambda ex, one=one, name=name: run_baseline(
                one, name, ex.question, ex.db_path
            )
    keys = list(dict.fromkeys(method_key(m, v) for v in agents for m in methods))
    # one task per (example, method), methods interleaved so the batching backend always has mixed work
    tasks = [(ex, m) for ex in examples for m in keys]

    def run(task: tuple[SpiderExample, str]) -> NL2SQLResult:
        ex, method = task
        return runners[method](ex)

    outputs = run_concurrently(run, tasks, concurrency=concurrency, description=description)

    items: list[dict[str, Any]] = []
    with ExecEvaluator() as evaluator:
        for i, ex in enumerate(examples):
            try:
                level = hardness(ex.query)
            except SQLError:
                level = "unknown"
            item: dict[str, Any] = {
                "index": ex.index,
                "db_id": ex.db_id,
                "question": ex.question,
                "gold": ex.query,
                "hardness": level,
            }
            for j, key in enumerate(keys):
                item[key] = _score(ex, outputs[i * len(keys) + j], evaluator, schemas)
            items.append(item)
    return metrics_from_items(items, keys), items if out_items else []


def metrics_from_items(items: Sequence[dict[str, Any]], methods: Sequence[str]) -> dict[str, float]:
    """The per-method means over scored items (so runs done in pieces can be merged and re-scored)."""
    metrics: dict[str, float] = {}
    for method in methods:
        rows = [it for it in items if method in it]
        if not rows:
            continue
        values: dict[str, list[float]] = {}
        for it in rows:
            record = it[method]
            for key in ("ex", "em", "llm_calls", "tokens", "seconds"):
                values.setdefault(key, []).append(float(record[key]))
            values.setdefault(f"ex_{it['hardness']}", []).append(float(record["ex"]))
            values.setdefault("executable", []).append(float(_executable(record)))
        for key in (
            "ex",
            "em",
            *(f"ex_{lv}" for lv in HARDNESS_LEVELS),
            "executable",
            "llm_calls",
            "tokens",
            "seconds",
        ):
            if values.get(key):
                metrics[f"{method}.{key}"] = round(statistics.fmean(values[key]), 4)
    return metrics


def _executable(record: dict[str, Any]) -> bool:
    """A prediction that ran on the database (whatever its rows); older records without a reason count by their SQL."""
    reason = record.get("reason")
    if reason is None:
        return bool(record.get("sql"))
    return bool(record.get("sql")) and not str(reason).startswith(("pred_", "gold_error"))


def _score(
    ex: SpiderExample, out: NL2SQLResult | BaseException, evaluator: ExecEvaluator, schemas: dict[str, Any] | None
) -> dict[str, Any]:
    if isinstance(out, BaseException):
        return {"sql": None, "ex": 0, "em": 0, "llm_calls": 0, "tokens": 0, "seconds": 0.0, "error": repr(out)}
    sql = out.sql or ""
    try:
        match = evaluator.evaluate(ex.db_path, sql, ex.query)
        ex_score, reason = match.score, match.reason
    except GoldExecutionError as err:
        ex_score, reason = 0, f"gold_error: {err}"
    em = 0
    if sql:
        try:
            em = int(exact_match(sql, ex.query, (schemas or {}).get(ex.db_id)))
        except SQLError:
            em = 0
    usage = out.usage
    record: dict[str, Any] = {
        "sql": out.sql,
        "ex": ex_score,
        "em": em,
        "reason": reason,
        "llm_calls": usage.calls,
        "tokens": usage.total_tokens,
        "seconds": out.seconds,
        "error": out.error,
    }
    if out.method == "learnat":
        record["candidates"] = out.candidates
        record["steps"] = out.steps
    if out.demos:
        record["demos"] = out.demos
    return record


def evaluate_spider(
    model: Any,
    data_dir: str | Path,
    *,
    limit: int | None = None,
    methods: Sequence[str] = METHODS,
    concurrency: int = 8,
    out_items: bool = True,
    seed: int = 0,
    split: str = "dev",
    index: DemoIndex | None = None,
    agent_config: AgentConfig | None = None,
    cache_dir: str | Path | None = None,
    embed: Any = None,
    databases: Sequence[str] | None = None,
) -> EvalResult:
    """Evaluate `methods` on Spider `split` (default dev) with `model`: a `ChatModel`, or a mapping variant ->
    model (e.g. `{"adapter": tuned, "base": base}`) whose figures go under `method[variant]`.

    `limit` evaluates a seeded stratified sample (see the module doc). The demonstration index is built
    from `train_spider_slim.json` (cached under `cache_dir`) unless `index` is given. `databases` keeps the
    questions of those databases only; on the train split (held-out training databases) the index then
    excludes them, so no question is its own demonstration.
    """
    data_dir = Path(data_dir)
    start = time.monotonic()
    spider = load_spider(data_dir, split)
    pool = spider.examples
    if databases is not None:
        wanted = set(databases)
        pool = [e for e in pool if e.db_id in wanted]
    examples = pool if limit is None else stratified_sample(pool, limit, seed)
    needs_model = any(m != "gold" for m in methods)
    needs_index = any(m in ("single_shot_demos", "learnat") for m in methods)
    if index is None and needs_index:
        index = DemoIndex.from_spider(data_dir, embed, cache_dir=cache_dir)
    if index is not None and split == "train":
        index.exclude(db_ids={e.db_id for e in examples})
    models = dict(model) if isinstance(model, Mapping) else {"": model}
    if needs_model and embed is None:  # one encoder for every variant's agent
        from prunekit.decoding.backends.embeddings import load_embedder

        embed = load_embedder()
    agents = (
        {v: NL2SQLAgent(m, index=index, embed=embed, config=agent_config) for v, m in models.items()}
        if needs_model
        else {}
    )
    agent: Any = (agents if len(agents) > 1 else agents[next(iter(agents))]) if needs_model else None
    schemas = load_tables(data_dir) if (data_dir / "tables.json").is_file() else {}
    if agent is None:
        agent = _GoldOnlyAgent()  # type: ignore[assignment]
    metrics, items = evaluate_examples(
        examples,
        agent,
        methods=methods,
        concurrency=concurrency,
        schemas=schemas,
        out_items=out_items,  # type: ignore[arg-type]
    )
    if index is not None and split == "train":
        index.clear_exclusions()
    config: dict[str, Any] = {
        "data_dir": str(data_dir),
        "split": split,
        "methods": list(methods),
        "model": {v or "model": model_name(m) for v, m in models.items()}
        if len(models) > 1
        else (model_name(model) if model is not None else None),
        "databases": sorted(set(databases)) if databases is not None else None,
        "limit": limit,
        "seed": seed,
        "sampling": "stratified by database, proportional, seeded" if limit is not None else "all runnable",
        "n_examples": len(examples),
        "n_runnable": len(spider.examples),
        "n_total": spider.total,
        "n_skipped": len(spider.skipped),
        "skipped_databases": spider.missing_databases,
        "hardness_counts": {lv: sum(1 for it in items if it["hardness"] == lv) for lv in HARDNESS_LEVELS}
        if out_items
        else None,
        "agent": _config_dict(agent_config or AgentConfig()) if needs_model else None,
        "demonstrations": "train_spider_slim.json" if needs_index else None,
        "concurrency": concurrency,
        "wall_seconds": round(time.monotonic() - start, 1),
    }
    return EvalResult(task="spider", config=config, metrics=metrics, items=items)


def _config_dict(config: AgentConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(config)


class _GoldOnlyAgent:
    """Stands in for the agent when only `gold` is evaluated (no model needed)."""

    def answer(self, *_: Any) -> NL2SQLResult:
        raise RuntimeError("no model was given")
