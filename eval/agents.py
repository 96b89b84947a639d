"""Multi-agent evaluation: AGP's pruned teams against fixed topologies, side by side on one model.

AGP (Adaptive Graph Pruning for Multi-Agent Communication, arXiv 2506.02951) reports accuracy next to the tokens a
team spends. This runner does the same on held-out items of `squad | multiarith | gsm8k | svamp | aqua | humaneval`:
every item whose task appears in a stage-I record file (AGP's released ones and ours under
`graph_pruning/records/`) is excluded before `limit` is applied (`graph_pruning.data.exclude_stage1`).

Methods (all over the benchmark's domain pool of N_max agents, the same `ChatModel` and `RunConfig`):

| method   | topology                                                                                          |
|----------|---------------------------------------------------------------------------------------------------|
| `single` | the pool's first agent alone (math: Math Solver; general: Knowledgeable Expert; code: Project Manager) |
| `chain`  | all N_max agents in pool order, each reading the previous one, 1 round (G-Designer's "Chain")      |
| `full`   | all N_max agents, complete graph (i -> j for i < j), 3 rounds, every agent reading every agent's     |
|          | previous-round message: the LLM-Debate-like baseline AGP compares its tokens with                  |
| `random` | as many random agents as AGP keeps for that task, random DAG edges (p = 0.5), AGP's rounds          |
| `agp`    | the trained pruner's deterministic choice (`GraphPruner.choose`), shipped weights by default        |

Metrics (`<method>.<metric>`, means over the items): `accuracy` (exact answer for numbers and multiple choice,
pass@1 on the hidden tests for HumanEval, token F1 for SQuAD; a failed run scores 0), `tokens` (prompt +
completion of every LLM call of the task), `llm_calls`, `seconds` (wall time of the task's run: with `concurrency`
> 1 tasks share the backend, so this is latency under load, not a single-stream figure), `error_rate`; plus
`agp.agents_kept`. `plot_accuracy_vs_tokens` draws the accuracy-against-tokens picture of AGP's Fig. 3.

Code runs only in the bubblewrap sandbox (`graph_pruning.sandbox`): the runs default to
`RunConfig(code_execution="sandbox")` (AGP's method tests code candidates and runs math programs), and HumanEval's
pass@1 runs the hidden tests there. A math or code benchmark without a usable sandbox fails before the first item
with how to install it (`SandboxUnavailableError`); nothing falls back to running code unsandboxed.

A run on one SQuAD question (the official layout under `data_dir`; by default ../shared/data) with a scripted model:

>>> import contextlib, io, json, tempfile
>>> from prunekit.decoding import ChatResult, Usage
>>> from prunekit.eval.harness import write_results
>>> class Broncos:  # a scripted stand-in for any ChatModel: load_embedded(), OpenAIModel(...)
...     name = "broncos"
...     def chat(self, messages, params=None):
...         return ChatResult("Denver Broncos", "stop", Usage(prompt_tokens=60, completion_tokens=2))
>>> tmp = tempfile.TemporaryDirectory()
>>> squad = Path(tmp.name) / "qa/squad_v1.1/dev-v1.1.half_A.json"
>>> squad.parent.mkdir(parents=True)
>>> qa = {"id": "q1", "question": "Which team won Super Bowl 50?",
...       "answers": [{"text": "Denver Broncos", "answer_start": 4}]}
>>> _ = squad.write_text(json.dumps({"data": [{"title": "SB50", "paragraphs": [
...     {"context": "The Denver Broncos won Super Bowl 50.", "qas": [qa]}]}]}))
>>> with contextlib.redirect_stdout(io.StringIO()):  # (the progress bar)
...     result = evaluate_agents(Broncos(), "squad", data_dir=tmp.name, methods=("single", "chain", "agp"))
>>> [result.metrics[f"{m}.accuracy"] for m in ("single", "chain", "agp")], result.metrics["chain.llm_calls"]
([1.0, 1.0, 1.0], 9.0)
>>> write_results(result, Path(tmp.name) / "run", plots=[plot_accuracy_vs_tokens]).name  # + report.md, plots
'results.json'
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prunekit.decoding import ChatModel, InvalidRequestError, model_name
from prunekit.eval.harness import EvalResult, run_concurrently
from prunekit.graph_pruning.data import (
    BENCHMARK_DOMAIN,
    BenchmarkItem,
    default_data_dir,
    exclude_stage1,
    load_benchmark,
    score_answer,
    stage1_files,
    stage1_task_keys,
)
from prunekit.graph_pruning.errors import UnknownBenchmarkError
from prunekit.graph_pruning.execute import AgentRunResult, RunConfig, run_agents
from prunekit.graph_pruning.model import GraphPruner
from prunekit.graph_pruning.pools import AgentPool, get_pool
from prunekit.graph_pruning.records import shipped_record_files
from prunekit.graph_pruning.sandbox import require_sandbox
from prunekit.graph_pruning.topology import Topology, chain, complete, random_topology, single

__all__ = [
    "FULL_ROUNDS",
    "METHODS",
    "UnknownMethodError",
    "evaluate_agents",
    "method_topologies",
    "plot_accuracy_vs_tokens",
]

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("single", "chain", "full", "random", "agp")
FULL_ROUNDS = 3  # LLM-Debate's usual number of rounds; AGP's token comparison uses it


class UnknownMethodError(InvalidRequestError):
    """A method name is not one of `METHODS`."""


def method_topologies(
    methods: Sequence[str],
    pool: AgentPool,
    items: Sequence[BenchmarkItem],
    pruner: GraphPruner | None,
    seed: int = 0,
) -> list[dict[str, Topology]]:
    """Per item, the topology each method runs. The pruner embeds all tasks in one batch (fast, and no encoder
    call from worker threads); `random` draws from a per-item generator so a rerun repeats it."""
    n = pool.size
    agp: list[Topology] = []
    if "agp" in methods or "random" in methods:
        if pruner is None:
            raise InvalidRequestError("`agp` and `random` need a pruner")
        keep_p, edge_p = pruner.predict(pruner.embed_fn([it.task.text for it in items])) if items else ([], [])
        agp = [pruner.topology_from_probs(k, e) for k, e in zip(keep_p, edge_p, strict=True)]
    out: list[dict[str, Topology]] = []
    for i, item in enumerate(items):
        plan: dict[str, Topology] = {}
        for method in methods:
            if method == "single":
                plan[method] = single(n, 0)
            elif method == "chain":
                plan[method] = chain(n)
            elif method == "full":
                plan[method] = complete(n, rounds=FULL_ROUNDS, temporal=True)
            elif method == "random":
                k, rounds = len(agp[i].kept), agp[i].rounds
                drawn = random_topology(n, k, rng=random.Random(f"{seed}:{item.id}"), rounds=rounds)
                # the same rounds and temporal wiring as AGP's choice (code runs 2 rounds): only the graph differs
                temporal = "all" if agp[i].temporal else ()
                plan[method] = Topology.build(n, drawn.kept, drawn.edges, rounds=rounds, temporal=temporal)
            elif method == "agp":
                plan[method] = agp[i]
        out.append(plan)
    return out


def _check_methods(methods: Iterable[str]) -> tuple[str, ...]:
    methods = tuple(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UnknownMethodError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    return methods


def _item_record(
    item: BenchmarkItem, method: str, topology: Topology, out: tuple[AgentRunResult, float] | BaseException
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": item.id,
        "method": method,
        "agents": topology.kept,
        "edges": [list(e) for e in topology.edges],
        "rounds": topology.rounds,
    }
    if isinstance(out, BaseException):
        return record | {"error": f"{type(out).__name__}: {out}", "score": 0.0}
    run, score = out
    usage = run.usage
    gold = item.gold if item.task.answer_format != "code" else ("<hidden tests>",)
    return record | {
        "answer": run.answer,
        "gold": list(gold),
        "score": score,
        "tokens": usage.total_tokens,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "llm_calls": usage.calls,
        "seconds": round(run.seconds, 3),
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _metrics(methods: Sequence[str], records: Sequence[dict[str, Any]]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for method in methods:
        rows = [r for r in records if r["method"] == method]
        ok = [r for r in rows if "error" not in r]
        metrics[f"{method}.accuracy"] = _mean([r["score"] for r in rows])  # a failed run scores 0
        metrics[f"{method}.tokens"] = _mean([r["tokens"] for r in ok])
        metrics[f"{method}.llm_calls"] = _mean([r["llm_calls"] for r in ok])
        metrics[f"{method}.seconds"] = _mean([r["seconds"] for r in ok])
        metrics[f"{method}.error_rate"] = (len(rows) - len(ok)) / len(rows) if rows else float("nan")
        if method == "agp":
            metrics["agp.agents_kept"] = _mean([len(r["agents"]) for r in rows])
    return metrics


def evaluate_agents(
    model: ChatModel,
    benchmark: str,
    *,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    methods: Sequence[str] = METHODS,
    concurrency: int = 8,
    seed: int = 0,
    split: str | None = None,
    pruner: GraphPruner | str | Path | None = None,
    stage1_paths: Sequence[str | Path] | None = None,
    run_config: RunConfig | None = None,
) -> EvalResult:
    """Run `methods` on the first `limit` held-out items of `benchmark` with `model`; metrics per method.

    `split` defaults to the benchmark's evaluation split (SQuAD: dev half A; the others: test). `pruner` is a
    `GraphPruner`, a directory with one, or None for the shipped pruner of the benchmark's domain. Items whose task
    appears in AGP's stage-I files or in `stage1_paths` (default: every file under `graph_pruning/records/`) are
    excluded. Every (item, method) run goes to a bounded thread pool of `concurrency` workers; a run that raises
    is recorded with its error and scores 0. `run_config` defaults to code execution in the sandbox; a math or code
    benchmark raises `SandboxUnavailableError` up front when the sandbox cannot run.
    """
    if benchmark not in BENCHMARK_DOMAIN:
        raise UnknownBenchmarkError(f"unknown benchmark {benchmark!r}; choose one of {list(BENCHMARK_DOMAIN)}")
    methods = _check_methods(methods)
    if limit is not None and limit < 1:
        raise InvalidRequestError(f"limit must be a positive number of items, got {limit}")
    domain = BENCHMARK_DOMAIN[benchmark]
    config = run_config or RunConfig(code_execution="sandbox")
    if benchmark == "humaneval" or (config.executes and domain in ("math", "code")):
        require_sandbox()  # pass@1 and the method itself run code: sandboxed or not at all
    pool = get_pool(domain)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    ours = list(shipped_record_files()) if stage1_paths is None else [Path(p) for p in stage1_paths]
    excluded = stage1_files(root, ours)
    items, n_benchmark, n_excluded = _heldout_items(benchmark, split, root, excluded, limit)
    needs_pruner = "agp" in methods or "random" in methods
    if needs_pruner and not isinstance(pruner, GraphPruner):
        pruner = GraphPruner.load(pruner if pruner is not None else domain)
    plans = method_topologies(methods, pool, items, pruner if needs_pruner else None, seed)  # type: ignore[arg-type]
    records = _run_methods(model, pool, items, plans, methods, config, concurrency, f"agents {benchmark}")
    metrics = _metrics(methods, records)
    result_config: dict[str, Any] = {
        "benchmark": benchmark,
        "split": split or ("dev" if benchmark == "squad" else "test"),
        "domain": domain,
        "model": model_name(model),
        "limit": limit,
        "n_items": len(items),
        "n_benchmark": n_benchmark,
        "n_excluded_stage1": n_excluded,
        "stage1_files": [str(p) for p in excluded],
        "methods": list(methods),
        "topologies": _topology_descriptions(pool),
        "seed": seed,
        "concurrency": concurrency,
        "run_config": asdict(config),
    }
    if needs_pruner and isinstance(pruner, GraphPruner):
        result_config["pruner"] = _pruner_description(pruner)
    logger.info("agents %s: %s", benchmark, {k: round(v, 4) for k, v in metrics.items()})
    return EvalResult(task=f"agents-{benchmark}", config=result_config, metrics=metrics, items=records)


def _heldout_items(
    benchmark: str, split: str | None, root: Path, excluded: Sequence[Path], limit: int | None
) -> tuple[list[BenchmarkItem], int, int]:
    """The first `limit` items of the split whose task is in none of the `excluded` stage-I files; with the size of
    the split and how many items the exclusion removed."""
    every = load_benchmark(benchmark, split, data_dir=root)
    held = exclude_stage1(every, stage1_task_keys(excluded))
    items = held[:limit] if limit is not None else held
    if not items:
        raise InvalidRequestError(f"no held-out {benchmark} items left after excluding the stage-I tasks")
    return items, len(every), len(every) - len(held)


def _run_methods(
    model: ChatModel,
    pool: AgentPool,
    items: Sequence[BenchmarkItem],
    plans: Sequence[dict[str, Topology]],
    methods: Sequence[str],
    config: RunConfig,
    concurrency: int,
    description: str,
) -> list[dict[str, Any]]:
    """Every (item, method) run on a bounded thread pool, scored; the records in method order, then item order."""
    # the most expensive runs first, so the pool does not end on a tail of long `full` debates
    units = [(i, m) for m in sorted(methods, key=lambda m: m != "full") for i in range(len(items))]

    def run_one(unit: tuple[int, str]) -> tuple[AgentRunResult, float]:
        i, method = unit
        result = run_agents(items[i].task, pool, plans[i][method], model, config)
        return result, score_answer(items[i], result.answer)

    outputs = run_concurrently(run_one, units, concurrency=concurrency, description=description)
    records = [_item_record(items[i], m, plans[i][m], out) for (i, m), out in zip(units, outputs, strict=True)]
    position = {it.id: k for k, it in enumerate(items)}
    records.sort(key=lambda r: (methods.index(r["method"]), position[r["id"]]))
    return records


def _topology_descriptions(pool: AgentPool) -> dict[str, str]:
    """What each method runs, in words, for the results' config."""
    return {
        "single": "agent 0 alone",
        "chain": f"agents 0..{pool.size - 1} in a chain, 1 round",
        "full": f"complete graph of {pool.size} agents, {FULL_ROUNDS} rounds, all temporal edges",
        "random": "AGP's agent count, random agents and DAG edges (p=0.5)",
        "agp": "pruner's deterministic choice",
    }


def _pruner_description(pruner: GraphPruner) -> dict[str, Any]:
    """Which pruner chose AGP's teams: its domain, training records and thresholds."""
    return {
        "domain": pruner.config.domain,
        "trained_on": pruner.config.extra.get("trained_on"),
        "keep_threshold": pruner.config.keep_threshold,
        "edge_threshold": pruner.config.edge_threshold,
    }


def plot_accuracy_vs_tokens(result: EvalResult, out_dir: Path) -> Path:
    """Accuracy against mean tokens per task, one point per method (log-scale tokens): AGP's Fig. 3 picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [k.split(".", 1)[0] for k in result.metrics if k.endswith(".accuracy")]
    fig, ax = plt.subplots(figsize=(5, 4))
    for method in methods:
        x, y = result.metrics.get(f"{method}.tokens"), result.metrics.get(f"{method}.accuracy")
        if x is None or y is None or x != x or y != y or x <= 0:  # NaN or nothing measured
            continue
        ax.scatter([x], [y], s=60, color="tab:red" if method == "agp" else "tab:blue")
        ax.annotate(method, (x, y), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    ax.set_xlabel("tokens per task (prompt + completion, mean)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{result.task}: accuracy vs tokens")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "accuracy_vs_tokens.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
