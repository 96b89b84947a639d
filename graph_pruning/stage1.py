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
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

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
from prunekit.graph_pruning.execute import RunConfig, run_agents
from prunekit.graph_pruning.pools import AgentPool, get_pool
from prunekit.graph_pruning.records import StageRecord, load_records, record_from_topology, save_records
from prunekit.graph_pruning.topology import Topology, random_topology

__all__ = [
    "STAGE1_BENCHMARKS",
    "Stage1Config",
    "collect_domain",
    "collect_stage1",
    "default_records_path",
    "sample_topologies",
]

logger = logging.getLogger(__name__)

ScoreFn = Callable[[BenchmarkItem, str], float]

# the training splits stage I draws from, per domain (code has none here: HumanEval is evaluation only)
STAGE1_BENCHMARKS: dict[str, tuple[str, ...]] = {"general": ("squad",), "math": ("multiarith", "svamp")}


def default_records_path(domain: str, benchmarks: Sequence[str]) -> Path:
    """Where `prunekit train agp --stage 1` writes a run's records unless told otherwise (relative to the working
    folder; the records committed as training data live in `graph_pruning/records/`).

    >>> default_records_path("math", ("multiarith", "svamp")).as_posix()
    'runs/agp/stage1_math_multiarith_svamp.json'
    """
    return Path("runs/agp") / f"stage1_{domain}_{'_'.join(benchmarks)}.json"


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
    collected = _Collected.resume(Path(out_path) if out_path is not None else None, pool.size, items)
    todo = [it for it in items if normalize_task(it.task.text) not in collected.done]
    trial = _Trial(pool, model, score, config, run_config, concurrency > 1)
    bar = tqdm(total=len(todo), desc=f"stage I ({pool.domain})", disable=not progress)
    if concurrency > 1:
        with ThreadPoolExecutor(max_workers=concurrency) as ex:
            futures = {ex.submit(trial.best_records, it): it for it in todo}
            for n, future in enumerate(as_completed(futures)):
                collected.add(futures[future], future.result(), n, len(todo))
                bar.update()
    else:
        for n, item in enumerate(todo):
            collected.add(item, trial.best_records(item), n, len(todo))
            bar.update()
    bar.close()
    return collected.records


@dataclass(frozen=True)
class _Trial:
    """Stage I on one item: sample graphs, run each, keep the best-scoring cheapest (`keep_per_task` of them)."""

    pool: AgentPool
    model: ChatModel
    score: ScoreFn
    config: Stage1Config
    run_config: RunConfig | None
    side_by_side: bool  # run an item's graphs in parallel: the backend batches their calls

    def best_records(self, item: BenchmarkItem) -> list[StageRecord]:
        rng = random.Random(f"{self.config.seed}:{item.id}")  # per item: resuming reproduces the same samples
        topologies = sample_topologies(self.pool, self.config, rng)
        if self.side_by_side:
            with ThreadPoolExecutor(max_workers=len(topologies) or 1) as ex:
                outcomes = list(ex.map(lambda t: self._run(item, t), topologies))
        else:
            outcomes = [self._run(item, t) for t in topologies]
        tried = [(s, tokens, i, t) for i, ((s, tokens), t) in enumerate(zip(outcomes, topologies, strict=True))]
        tried.sort(key=lambda x: (-x[0], x[1], x[2]))  # best score, then cheapest
        best = tried[: self.config.keep_per_task]
        if not best or (self.config.min_score is not None and best[0][0] < self.config.min_score):
            return []
        source = f"stage1:{self.model.name}"
        return [
            record_from_topology(item.task.text, t, score=s, tokens=tokens, domain=self.pool.domain, source=source)
            for s, tokens, _, t in best
        ]

    def _run(self, item: BenchmarkItem, topology: Topology) -> tuple[float, int]:
        """The graph's score on the item and the tokens it spent."""
        result = run_agents(item.task, self.pool, topology, self.model, self.run_config)
        s, tokens = float(self.score(item, result.answer)), result.usage.total_tokens
        logger.debug(
            "%s: %d agents, %d edges -> score %.3f, %d tokens",
            item.id,
            len(topology.kept),
            len(topology.edges),
            s,
            tokens,
        )
        return s, tokens


@dataclass
class _Collected:
    """The records so far and the tasks done (with or without a record), in the input order of the items; saved
    with the progress file after every task, so a stopped run resumes where it was."""

    out: Path | None
    position: dict[str, int]  # normalised task -> index among the items
    records: list[StageRecord] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def resume(cls, out: Path | None, n_agents: int, items: Sequence[BenchmarkItem]) -> _Collected:
        collected = cls(out, {normalize_task(it.task.text): i for i, it in enumerate(items)})
        if out is not None and out.exists():
            collected.records = load_records(out, n_agents)
            collected.done = {normalize_task(r.task) for r in collected.records}
            if _progress_path(out).exists():
                collected.done |= set(json.loads(_progress_path(out).read_text()))
            logger.info("resuming stage I: %d tasks done, %d records", len(collected.done), len(collected.records))
        return collected

    def add(self, item: BenchmarkItem, new: list[StageRecord], n: int, total: int) -> None:
        """Record the `n`-th finished item (of `total`) and save."""
        with self.lock:
            self.records.extend(new)
            self.done.add(normalize_task(item.task.text))
            # completion order varies with concurrency; records keep the input order of the items
            self.records.sort(key=lambda r: self.position.get(normalize_task(r.task), -1))
            if self.out is not None:
                save_records(self.out, self.records)
                tmp = _progress_path(self.out).with_suffix(".tmp")
                tmp.write_text(json.dumps(sorted(self.done)))
                tmp.replace(_progress_path(self.out))  # atomic: a run stopped mid-write still resumes
            if n % 10 == 0:
                logger.info("stage I: %d/%d tasks, %d records", n + 1, total, len(self.records))


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
