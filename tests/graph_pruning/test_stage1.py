"""Stage I with a scripted model: the best-scoring cheapest graph is recorded, resumable, leakage refused."""

from __future__ import annotations

import random

import pytest

from prunekit.graph_pruning.data import BenchmarkItem
from prunekit.graph_pruning.errors import LeakageError
from prunekit.graph_pruning.pools import get_pool
from prunekit.graph_pruning.records import load_records
from prunekit.graph_pruning.stage1 import Stage1Config, collect_stage1, sample_topologies
from prunekit.graph_pruning.task import AgentTask
from tests.graph_pruning.fakes import RecordingModel


def _items(n: int) -> list[BenchmarkItem]:
    return [BenchmarkItem(f"t{i}", "toy", AgentTask(f"What is {i} + 1?", "number"), (str(i + 1),)) for i in range(n)]


def _solver_only_model(pool):
    """Only the Inspector (index 3) answers right; everyone else says 0."""

    def reply(system: str, user: str) -> str:
        if system.startswith(pool.roles[3].prompt):
            q = int(user.split("What is ")[1].split(" ")[0])
            return f"The answer is {q + 1}"
        return "The answer is 0"

    return RecordingModel(reply)


def _score(item: BenchmarkItem, answer: str) -> float:
    return float(answer == item.gold[0])


def test_sample_topologies_covers_sizes_without_duplicates() -> None:
    pool = get_pool("math")
    topologies = sample_topologies(pool, Stage1Config(samples_per_size=3), random.Random(0))
    sizes = [len(t.kept) for t in topologies]
    assert set(sizes) == {1, 2, 3, 4}
    signatures = [(tuple(t.kept), tuple(t.edges)) for t in topologies]
    assert len(set(signatures)) == len(signatures)


def test_best_scoring_cheapest_graph_is_recorded(tmp_path) -> None:
    pool = get_pool("math")
    model = _solver_only_model(pool)
    config = Stage1Config(sizes=(1, 4), samples_per_size=4, seed=1)
    records = collect_stage1(
        _items(2), pool, model, score=_score, config=config, out_path=tmp_path / "s1.json", progress=False
    )
    assert len(records) == 2
    for r in records:
        # the single-agent Inspector graph solves it alone and is cheaper than any correct bigger graph
        assert r.score == 1.0 and r.kept == [3] and r.tokens is not None and r.tokens > 0
    assert load_records(tmp_path / "s1.json", 4) == records


def test_resume_skips_done_tasks(tmp_path) -> None:
    pool = get_pool("math")
    out = tmp_path / "s1.json"
    config = Stage1Config(sizes=(1,), samples_per_size=4)
    collect_stage1(_items(2), pool, _solver_only_model(pool), score=_score, config=config, out_path=out, progress=False)
    model = _solver_only_model(pool)
    records = collect_stage1(_items(3), pool, model, score=_score, config=config, out_path=out, progress=False)
    assert len(records) == 3
    assert all("What is 2 + 1?" in user for _, user, _ in model.calls)  # only the new task ran


def test_min_score_drops_unsolved_tasks() -> None:
    pool = get_pool("math")
    records = collect_stage1(
        _items(1),
        pool,
        RecordingModel("The answer is 0"),
        score=_score,
        config=Stage1Config(sizes=(1, 2), min_score=0.5),
        progress=False,
    )
    assert records == []


def test_leakage_is_refused() -> None:
    pool = get_pool("math")
    items = _items(2)
    evaluation = [BenchmarkItem("e", "toy", AgentTask("  what is 1 +  1? ", "number"), ("2",))]
    with pytest.raises(LeakageError):
        collect_stage1(items, pool, RecordingModel(), score=_score, forbidden=evaluation, progress=False)
