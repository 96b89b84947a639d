"""Stage I of AGP: find, per training task, the best-scoring cheapest agent graph, and record it.

AGP (arXiv 2506.02951) samples graphs from a randomly initialised pruner, runs them, and keeps the tasks a graph
solved. We sample sub-graphs of every size directly (k random agents, random DAG edges), run each with the given
`ChatModel`, score the answers, and keep per task the graph(s) with the highest score and, among equal scores, the
fewest tokens. Ties therefore favour small teams: exactly the signal a weak model needs ("fewer agents are often
better"). Records use AGP's layout plus `score` and `tokens` (`graph_pruning.records`).

Training tasks must never be evaluation items: pass the evaluation items as `forbidden` and the collector refuses
to start on any overlap (`graph_pruning.data.check_no_leakage`). The run is resumable: records are saved after every
task, and tasks already done (including those that produced no record) are skipped on restart.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from prunekit.decoding.protocol import ChatModel
from prunekit.graph_pruning.data import (
    BENCHMARK_DOMAIN,
    BenchmarkItem,
    check_no_leakage,
    load_benchmark,
    normalize_task,
    score_answer,
    training_items,
)
from prunekit.graph_pruning.errors import UnknownBenchmarkError
from prunekit.graph_pruning.execute import AgentRunResult, RunConfig, run_agents
from prunekit.graph_pruning.pools import AgentPool, get_pool
from prunekit.graph_pruning.records import StageRecord, load_records, record_from_topology, save_records
from prunekit.graph_pruning.topology import Topology, random_topology
from tqdm import tqdm

__all__ = ["STAGE1_BENCHMARKS", "Stage1Config", "collect_domain", "collect_stage1", "sample_topologies"]

logger = logging.getLogger(__name__)

ScoreFn = Callable[[BenchmarkItem, str], float]

# the training splits stage I draws from, per domain (code has none here: HumanEval is evaluation only)
STAGE1_BENCHMARKS: dict[str, tuple[str, ...]] = {"general": ("squad",), "math": ("multiarith", "svamp")}


@dataclass(frozen=True)
class Stage1Config:
    """`sizes=None` samples every team size 1..N_max; `min_score=None` keeps a record even when nothing scored
    (the cheapest graph then wins, which teaches the pruner to spend little on hopeless tasks)."""

    sizes: tuple[int, ...] | None = None
    samples_per_size: int = 2
    edge_prob: float = 0.5
    rounds: int = 1
    keep_per_task: int = 1
    min_score: float | None = None
    seed: int = 0


def _signature(t: Topology) -> tuple:
    return (tuple(t.kept), tuple(t.edges))


def sample_topologies(pool: AgentPool, config: Stage1Config, rng: random.Random) -> list[Topology]:
    """Distinct random sub-graphs: `samples_per_size` per team size (fewer when a size has fewer distinct graphs)."""
    sizes = config.sizes or tuple(range(1, pool.size + 1))
    out: list[Topology] = []
    seen: set[tuple] = set()
    for k in sizes:
        found, attempts = 0, 0
        while found < config.samples_per_size and attempts < 20 * config.samples_per_size:
            attempts += 1
            t = random_topology(pool.size, k, rng=rng, edge_prob=config.edge_prob, rounds=config.rounds)
            if _signature(t) not in seen:
                seen.add(_signature(t))
                out.append(t)
                found += 1
    return out


def _progress_path(out_path: Path) -> Path:
    return out_path.with_suffix(".progress.json")


def collect_stage1(
    items: Sequence[BenchmarkItem],
    pool: AgentPool,
    model: ChatModel,
    *,
    score: ScoreFn = score_answer,
    config: Stage1Config | None = None,
    run_config: RunConfig | None = None,
    forbidden: Sequence[BenchmarkItem] = (),
    out_path: str | Path | None = None,
    progress: bool = True,
    concurrency: int = 1,
) -> list[StageRecord]:
    """Run sampled graphs on each training item; return (and save to `out_path`) the best cheapest ones.

    With `concurrency` > 1, that many items run at once and each item's sampled graphs run side by side (the
    `ChatModel` backends are thread-safe and batch concurrent calls); results do not depend on it.
    Raises `LeakageError` when an item's task is one of the `forbidden` (evaluation) items.
    """
    config = config or Stage1Config()
    check_no_leakage([it.task.text for it in items] + [it.task.prompt for it in items], forbidden)
    out = Path(out_path) if out_path is not None else None
    records: list[StageRecord] = []
    done: set[str] = set()
    if out is not None and out.exists():
        records = load_records(out, pool.size)
        done = {normalize_task(r.task) for r in records}
        if _progress_path(out).exists():
            done |= set(json.loads(_progress_path(out).read_text()))
        logger.info("resuming stage I: %d tasks done, %d records", len(done), len(records))
    todo = [it for it in items if normalize_task(it.task.text) not in done]
    position = {normalize_task(it.task.text): i for i, it in enumerate(items)}
    lock = threading.Lock()

    def collect_one(item: BenchmarkItem) -> list[StageRecord]:
        rng = random.Random(f"{config.seed}:{item.id}")  # per item: resuming reproduces the same samples
        topologies = sample_topologies(pool, config, rng)

        def run_one(topology: Topology) -> tuple[float, int]:
            result: AgentRunResult = run_agents(item.task, pool, topology, model, run_config)
            s = float(score(item, result.answer))
            logger.debug(
                "%s: %d agents, %d edges -> score %.3f, %d tokens",
                item.id,
                len(topology.kept),
                len(topology.edges),
                s,
                result.tokens,
            )
            return s, result.tokens

        if concurrency > 1:  # the item's graphs run side by side: the backend batches their calls
            with ThreadPoolExecutor(max_workers=len(topologies) or 1) as ex:
                outcomes = list(ex.map(run_one, topologies))
        else:
            outcomes = [run_one(t) for t in topologies]
        tried = [(s, tokens, i, t) for i, ((s, tokens), t) in enumerate(zip(outcomes, topologies, strict=True))]
        tried.sort(key=lambda x: (-x[0], x[1], x[2]))  # best score, then cheapest
        best = tried[: config.keep_per_task]
        if not best or (config.min_score is not None and best[0][0] < config.min_score):
            return []
        return [
            record_from_topology(
                item.task.text,
                topology,
                score=s,
                tokens=tokens,
                domain=pool.domain,
                source=f"stage1:{model.name}",
            )
            for s, tokens, _, topology in best
        ]

    def finish(item: BenchmarkItem, new: list[StageRecord], n: int) -> None:
        with lock:
            records.extend(new)
            done.add(normalize_task(item.task.text))
            # completion order varies with concurrency; records keep the input order of the items
            records.sort(key=lambda r: position.get(normalize_task(r.task), -1))
            if out is not None:
                save_records(out, records)
                tmp = _progress_path(out).with_suffix(".tmp")
                tmp.write_text(json.dumps(sorted(done)))
                tmp.replace(_progress_path(out))  # atomic: a run stopped mid-write still resumes
            if n % 10 == 0:
                logger.info("stage I: %d/%d tasks, %d records", n + 1, len(todo), len(records))

    bar = tqdm(total=len(todo), desc=f"stage I ({pool.domain})", disable=not progress)
    if concurrency > 1:
        with ThreadPoolExecutor(max_workers=concurrency) as ex:
            futures = {ex.submit(collect_one, it): it for it in todo}
            for n, future in enumerate(as_completed(futures)):
                finish(futures[future], future.result(), n)
                bar.update()
    else:
        for n, item in enumerate(todo):
            finish(item, collect_one(item), n)
            bar.update()
    bar.close()
    return records


def collect_domain(
    domain: str,
    model: ChatModel,
    out_path: str | Path,
    *,
    limit: int,
    benchmarks: Sequence[str] | None = None,
    data_dir: str | Path | None = None,
    config: Stage1Config | None = None,
    run_config: RunConfig | None = None,
    concurrency: int = 4,
    progress: bool = True,
) -> list[StageRecord]:
    """Stage I of a domain on its training splits (`STAGE1_BENCHMARKS`): the first `limit` items of each benchmark
    after a shuffle with `config.seed`, so a rerun with a larger `limit` resumes and only adds new tasks. Every
    evaluation item of those benchmarks is passed as `forbidden` (a leak raises `LeakageError`)."""
    config = config or Stage1Config()
    names = tuple(benchmarks) if benchmarks is not None else STAGE1_BENCHMARKS.get(domain, ())
    if not names:
        raise UnknownBenchmarkError(f"no stage-I training split for the {domain} domain; pass `benchmarks`")
    per_benchmark: list[list[BenchmarkItem]] = []
    forbidden: list[BenchmarkItem] = []
    for name in names:
        if BENCHMARK_DOMAIN.get(name) != domain:
            raise UnknownBenchmarkError(f"{name} is not a {domain} benchmark")
        per_benchmark.append(training_items(name, data_dir=data_dir, limit=limit, seed=config.seed))
        forbidden += load_benchmark(name, data_dir=data_dir)
    # interleaved, so a run stopped early has tasks of every benchmark
    items = [it for group in itertools.zip_longest(*per_benchmark) for it in group if it is not None]
    logger.info("stage I (%s): %d training items from %s", domain, len(items), ", ".join(names))
    return collect_stage1(
        items,
        get_pool(domain),
        model,
        config=config,
        run_config=run_config or RunConfig(code_execution="sandbox"),  # AGP's runs execute code: sandboxed only
        forbidden=forbidden,
        out_path=out_path,
        progress=progress,
        concurrency=concurrency,
    )
