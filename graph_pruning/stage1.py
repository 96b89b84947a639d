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

import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from decoding.protocol import ChatModel
from graph_pruning.data import BenchmarkItem, check_no_leakage, normalize_task, score_answer
from graph_pruning.execute import AgentRunResult, RunConfig, run_agents
from graph_pruning.pools import AgentPool
from graph_pruning.records import StageRecord, load_records, record_from_topology, save_records
from graph_pruning.topology import Topology, random_topology

__all__ = ["Stage1Config", "collect_stage1", "sample_topologies"]

logger = logging.getLogger(__name__)

ScoreFn = Callable[[BenchmarkItem, str], float]


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
) -> list[StageRecord]:
    """Run sampled graphs on each training item; return (and save to `out_path`) the best cheapest ones.

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
    for n, item in enumerate(tqdm(todo, desc=f"stage I ({pool.domain})", disable=not progress)):
        rng = random.Random(f"{config.seed}:{item.id}")  # per item: resuming reproduces the same samples
        tried: list[tuple[float, int, int, Topology]] = []
        for i, topology in enumerate(sample_topologies(pool, config, rng)):
            result: AgentRunResult = run_agents(item.task, pool, topology, model, run_config)
            s = float(score(item, result.answer))
            tried.append((s, result.tokens, i, topology))
            logger.debug(
                "%s: %d agents, %d edges -> score %.3f, %d tokens",
                item.id,
                len(topology.kept),
                len(topology.edges),
                s,
                result.tokens,
            )
        tried.sort(key=lambda x: (-x[0], x[1], x[2]))  # best score, then cheapest
        best = tried[: config.keep_per_task]
        if best and (config.min_score is None or best[0][0] >= config.min_score):
            for s, tokens, _, topology in best:
                records.append(
                    record_from_topology(
                        item.task.text,
                        topology,
                        score=s,
                        tokens=tokens,
                        domain=pool.domain,
                        source=f"stage1:{model.name}",
                    )
                )
        done.add(normalize_task(item.task.text))
        if out is not None:
            save_records(out, records)
            _progress_path(out).write_text(json.dumps(sorted(done)))
        if n % 10 == 0:
            logger.info("stage I: %d/%d tasks, %d records", n + 1, len(todo), len(records))
    return records
