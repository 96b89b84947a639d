"""Stage II: the loss learns a learnable pattern, training resumes from its checkpoint, metrics and baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from prunekit.graph_pruning.errors import InvalidRecordError
from prunekit.graph_pruning.pools import get_pool
from prunekit.graph_pruning.records import StageRecord, save_records
from prunekit.graph_pruning.train import (
    TrainConfig,
    cross_validate,
    evaluate_pruner,
    heldout_decisions,
    kfold_records,
    make_optimizer,
    score_decisions,
    split_records,
    train_domain,
    train_pruner,
)
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
    from prunekit.graph_pruning.model import GraphPruner

    model = GraphPruner.from_pool(get_pool("code"), embed=fake_embed)
    optimizer = make_optimizer(model, TrainConfig())
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in model.parameters()}


def test_baselines_on_a_known_case() -> None:
    from prunekit.graph_pruning.model import GraphPruner

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


def _single_agent_records(n_tasks: int = 30) -> list[StageRecord]:
    """A weak model's records: one agent per task, agent 0 on 'cats' tasks, agent 2 on 'dogs' tasks."""
    records = []
    for i in range(n_tasks):
        kind, agent = ("cats", 0) if i % 2 == 0 else ("dogs", 2)
        mask = [0.0 if a == agent else 1.0 for a in range(4)]
        records.append(StageRecord(task=f"{kind} question {i}", edge_weight=[[0.0] * 4 for _ in range(4)], mask=mask))
    return records


def test_kfold_holds_every_task_out_once_with_its_duplicates() -> None:
    records = _synthetic(10) + _synthetic(10)  # every task twice
    folds = kfold_records(records, 3, seed=0)
    held_tasks = [r.task for _, held in folds for r in held]
    assert sorted(held_tasks) == sorted(r.task for r in records)  # each record held out exactly once
    for train, held in folds:
        assert not ({r.task for r in train} & {r.task for r in held}) and len(train) + len(held) == 20
    with pytest.raises(InvalidRecordError, match="folds"):
        kfold_records(records, 11)  # more folds than distinct tasks
    with pytest.raises(InvalidRecordError, match="folds"):
        kfold_records(records, 1)


def test_cross_validation_pools_every_record_and_beats_the_position_majority() -> None:
    torch.manual_seed(0)
    records, pool = _single_agent_records(30), get_pool("math")
    m = cross_validate(records, pool, config=TrainConfig(epochs=40, folds=3), embed=_kind_embed, progress=False)
    assert m["folds"] == 3 and m["mean_kept_true"] == 1.0 and m["mean_kept_pred"] == 1.0
    # the best fixed team (the agent kept most often in the training part) gets about half the tasks
    assert m["keep_exact"] > 0.9 and 0.3 <= m["position_majority.keep_exact"] <= 0.6
    assert m["keep_all.keep_acc"] == pytest.approx(0.25) and m["majority.keep_acc"] == pytest.approx(0.75)
    extra = [  # another model's records (every agent kept): in every training part, never held out
        StageRecord(task=f"birds question {i}", edge_weight=[[0.0] * 4 for _ in range(4)], mask=[0.0] * 4)
        for i in range(8)
    ]
    m = cross_validate(
        records, pool, config=TrainConfig(epochs=2, folds=3), embed=_kind_embed, extra_train=extra, progress=False
    )
    assert m["mean_kept_true"] == 1.0  # only our 30 single-agent records were scored
    assert m["keep_exact"] * 30 == pytest.approx(round(m["keep_exact"] * 30))
    assert 0.3 <= m["position_majority.keep_exact"] <= 0.6  # fitted on our records only (with birds: all four)


def test_metrics_score_the_team_choose_runs_never_an_empty_one() -> None:
    """All keep probabilities below the threshold: `choose` runs the most probable agent, and so do the metrics."""
    from prunekit.graph_pruning.model import GraphPruner

    model = GraphPruner.from_pool(get_pool("math"), embed=fake_embed)
    with torch.no_grad():
        model.keep_head[-1].weight.zero_()
        model.keep_head[-1].bias.zero_()
        model.keep_prior.copy_(torch.tensor([-3.0, -1.0, -4.0, -5.0]))  # agent 1 most probable, all below 0.5
    held = _single_agent_records(4)  # agent 0 on 'cats', agent 2 on 'dogs'
    d = heldout_decisions(model, fake_embed([r.task for r in held]), held, _single_agent_records(10))
    assert d[""].keep.sum(1).tolist() == [1, 1, 1, 1] and d[""].keep[:, 1].all()
    assert not d["majority"].keep.any()  # the majority class is 'prune': the (unrunnable) empty team
    assert d["position_majority"].keep.sum(1).tolist() == [1, 1, 1, 1]  # a fixed team is never empty either
    m = score_decisions(d, held)
    assert m["mean_kept_pred"] == 1.0 and m["keep_acc"] == pytest.approx(0.5) and m["keep_exact"] == 0.0
    assert m["majority.keep_acc"] == pytest.approx(0.75)


def test_train_domain_cross_validates_and_records_provenance(tmp_path) -> None:
    ours = save_records(
        tmp_path / "general_fake.json",
        [
            StageRecord(task=r.task, edge_weight=[[0.0] * 9 for _ in range(9)], mask=r.mask + [1.0] * 5)
            for r in _single_agent_records(12)
        ],
    )
    result = train_domain(
        "general",
        extra_records=[ours],
        include_agp=False,
        out_dir=tmp_path / "w",
        config=TrainConfig(epochs=3, folds=3),
        cache_dir=tmp_path / "cache",
        progress=False,
        note="why: a test",
        embed=_kind_embed,
    )
    extra = json.loads((tmp_path / "w" / "config.json").read_text())["extra"]
    assert extra["trained_on"] == ["general_fake.json"] and extra["note"] == "why: a test"
    assert extra["heldout_protocol"].startswith("3-fold by task over general_fake.json")
    assert extra["records"] == {"train": 12, "heldout": 12} and result.metrics["folds"] == 3
    assert extra["heldout_metrics"]["edge_head_acc"] is None  # NaN (no kept pairs) is stored as null
    assert sorted((tmp_path / "cache").glob("stage2_general_*_folds/fold*.pt"))  # each fold resumable
    with pytest.raises(InvalidRecordError, match="missing"):
        train_domain("general", extra_records=[tmp_path / "nope.json"], include_agp=False, out_dir=tmp_path / "x")
    with pytest.raises(InvalidRecordError, match="no stage-I records"):
        train_domain("general", include_agp=False, out_dir=tmp_path / "x")
