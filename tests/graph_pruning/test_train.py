"""Stage II: the loss learns a learnable pattern, training resumes from its checkpoint, metrics and baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graph_pruning.errors import InvalidRecordError
from graph_pruning.pools import get_pool
from graph_pruning.records import StageRecord
from graph_pruning.train import TrainConfig, evaluate_pruner, make_optimizer, split_records, train_pruner
from tests.graph_pruning.test_model import fake_embed


def _synthetic(n_tasks: int = 60) -> list[StageRecord]:
    """Tasks about 'cats' keep agents {0, 1}; tasks about 'dogs' keep {2, 3}; edges i -> j for i < j among kept."""
    records = []
    for i in range(n_tasks):
        kind = "cats" if i % 2 == 0 else "dogs"
        kept = {0, 1} if kind == "cats" else {2, 3}
        mask = [0.0 if a in kept else 1.0 for a in range(4)]
        w = [[0.7 if (a < b and a in kept and b in kept) else 0.0 for b in range(4)] for a in range(4)]
        records.append(StageRecord(task=f"{kind} question {i}", edge_weight=w, mask=mask))
    return records


def _kind_embed(texts):
    """An embedding that carries the task kind (what MiniLM would do for real topics), plus noise."""
    base = fake_embed(texts) * 0.1
    for row, t in zip(base, texts, strict=True):
        row[0] += 1.0 if t.startswith("cats") else -1.0
    return base


def test_split_keeps_duplicate_tasks_together() -> None:
    records = _synthetic(10) + _synthetic(10)  # every task twice
    train, held = split_records(records, 0.2, seed=0)
    assert len(held) == 4 and not ({r.task for r in train} & {r.task for r in held})


def test_training_learns_a_task_dependent_team() -> None:
    torch.manual_seed(0)
    pool = get_pool("math")
    result = train_pruner(
        _synthetic(), pool, config=TrainConfig(epochs=40, cost_coef=0.0), embed=_kind_embed, progress=False
    )
    m = result.metrics
    assert m["keep_acc"] > 0.95 and m["keep_acc"] > m["position_majority.keep_acc"] + 0.3
    assert m["edge_acc"] > 0.95
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    cats = result.model.choose("cats question 999")
    assert cats.kept == [0, 1] and cats.edges == [(0, 1)]


def test_cost_term_prunes_harder() -> None:
    pool = get_pool("math")
    records = [
        StageRecord(
            task=f"q{i}",
            edge_weight=[[0.0] * 4 for _ in range(4)],
            mask=[0.0, 0.0, 1.0, 1.0] if i % 2 else [0.0, 0.0, 0.0, 0.0],
        )
        for i in range(40)
    ]
    kept = {}
    for coef in (0.0, 2.0):
        torch.manual_seed(0)
        r = train_pruner(
            records, pool, config=TrainConfig(epochs=30, cost_coef=coef, holdout=0.0), embed=fake_embed, progress=False
        )
        keep_p, _ = r.model.predict(fake_embed([f"q{i}" for i in range(40)]))
        kept[coef] = keep_p.mean()
    assert kept[2.0] < kept[0.0]


def test_resume_from_checkpoint(tmp_path) -> None:
    pool = get_pool("math")
    ckpt = tmp_path / "ckpt.pt"
    records = _synthetic(20)
    torch.manual_seed(0)
    first = train_pruner(
        records, pool, config=TrainConfig(epochs=3), embed=_kind_embed, checkpoint=ckpt, progress=False
    )
    assert [h["epoch"] for h in first.history] == [0, 1, 2] and ckpt.exists()
    second = train_pruner(
        records, pool, config=TrainConfig(epochs=5), embed=_kind_embed, checkpoint=ckpt, progress=False
    )
    assert [h["epoch"] for h in second.history] == [0, 1, 2, 3, 4]
    assert second.history[:3] == first.history


def test_optimizer_holds_every_parameter() -> None:
    from graph_pruning.model import GraphPruner

    model = GraphPruner.from_pool(get_pool("code"), embed=fake_embed)
    optimizer = make_optimizer(model, TrainConfig())
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in model.parameters()}


def test_baselines_on_a_known_case() -> None:
    from graph_pruning.model import GraphPruner

    pool = get_pool("math")
    train = _synthetic(20)
    held = _synthetic(4)
    model = GraphPruner.from_pool(pool, embed=fake_embed)
    m = evaluate_pruner(model, fake_embed([r.task for r in held]), held, train)
    assert m["keep_all.keep_acc"] == pytest.approx(0.5)  # half of each mask is pruned
    assert m["keep_all.edge_acc"] == pytest.approx(1 / 12)  # one edge out of 12 ordered pairs
    assert m["majority.edge_acc"] == pytest.approx(11 / 12)
    assert 0.0 <= m["keep_acc"] <= 1.0 and np.isfinite(m["edge_head_acc"])


def test_wrong_pool_is_refused() -> None:
    with pytest.raises(InvalidRecordError, match="wrong number of agents"):
        train_pruner(_synthetic(4), get_pool("code"), embed=fake_embed, progress=False)
