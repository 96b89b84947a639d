"""Our stage-I records (`graph_pruning/records/`, collected with the embedded model) and the weights trained on them:
layout, provenance, no evaluation item among them; plus the concurrent collector and the per-domain driver."""

from __future__ import annotations

import json

import pytest

from prunekit.graph_pruning.data import BenchmarkItem, load_benchmark, normalize_task, training_items
from prunekit.graph_pruning.errors import UnknownBenchmarkError
from prunekit.graph_pruning.model import GraphPruner
from prunekit.graph_pruning.pools import get_pool
from prunekit.graph_pruning.records import RECORDS_DIR, load_records, shipped_record_files
from prunekit.graph_pruning.stage1 import Stage1Config, collect_domain, collect_stage1
from prunekit.graph_pruning.task import AgentTask
from tests.conftest import require_data
from tests.graph_pruning.fakes import RecordingModel

SHIPPED = {"general": "general_smollm2.json", "math": "math_smollm2.json"}
MIN_RECORDS = {"general": 30, "math": 10}  # what the first collection runs produced (CPU-bound; see the records)
TRAIN_SOURCES = {"general": ("squad",), "math": ("multiarith", "svamp")}
EVAL_SPLITS = ("squad", "multiarith", "svamp", "gsm8k", "aqua")


@pytest.mark.parametrize("domain", sorted(SHIPPED))
def test_shipped_records_layout_and_provenance(domain: str) -> None:
    path = RECORDS_DIR / SHIPPED[domain]
    assert path in shipped_record_files(domain)
    records = load_records(path, get_pool(domain).size)  # validates AGP's layout: N x N edges, 0/1 mask
    assert len(records) >= MIN_RECORDS[domain]
    raw = json.loads(path.read_text())
    assert all({"task", "edge_weight", "mask", "score", "tokens"} <= set(r) for r in raw)
    for r in records:
        assert r.domain == domain and r.source.startswith("stage1:SmolLM2")
        assert 0.0 <= r.score <= 1.0 and r.tokens > 0 and r.kept
        # our edges are the realised ones: only between kept agents, acyclic by construction of the sampler
        assert all(r.edge_weight[i][j] == 0.0 for i in range(r.n_agents) for j in range(r.n_agents) if i == j)
        assert all(
            w == 0.0 or (i in r.kept and j in r.kept) for i, row in enumerate(r.edge_weight) for j, w in enumerate(row)
        )
    assert len({normalize_task(r.task) for r in records}) == len(records)  # one record per task


def test_records_are_small() -> None:
    assert sum(p.stat().st_size for p in RECORDS_DIR.glob("*.json")) < 2_000_000


@pytest.mark.data
@pytest.mark.parametrize("domain", sorted(SHIPPED))
def test_records_come_from_training_splits_never_evaluation(domain: str) -> None:
    require_data("agp/multiarith_test.json")
    require_data("qa/squad_v1.1/dev-v1.1.half_A.json")
    tasks = {normalize_task(r.task) for r in load_records(RECORDS_DIR / SHIPPED[domain])}
    train = {normalize_task(it.task.text) for b in TRAIN_SOURCES[domain] for it in training_items(b)}
    assert tasks <= train
    for benchmark in EVAL_SPLITS:
        evaluation = load_benchmark(benchmark)
        keys = {normalize_task(it.task.text) for it in evaluation} | {
            normalize_task(it.task.prompt) for it in evaluation
        }
        assert not tasks & keys, f"a {domain} stage-I task is a {benchmark} evaluation item"


@pytest.mark.parametrize("domain", sorted(SHIPPED))
def test_shipped_weights_were_trained_on_our_records(domain: str) -> None:
    """The embedded model's default pruners learn from its own records only (why: the `note`); the held-out figures
    come from k-fold by task over those records (`prunekit train agp --stage 2 --records ... --no-agp-records`)."""
    extra = GraphPruner.load(domain, embed=lambda texts: None).config.extra  # config only: no encoder call
    assert extra["trained_on"] == [SHIPPED[domain]] and extra["note"]
    assert extra["heldout_protocol"].startswith(f"5-fold by task over {SHIPPED[domain]}")
    n = len(load_records(RECORDS_DIR / SHIPPED[domain]))
    assert extra["records"] == {"train": n, "heldout": n}  # every record held out once
    assert {"keep_acc", "edge_acc", "keep_all.keep_acc", "majority.keep_acc"} <= set(extra["heldout_metrics"])


@pytest.mark.parametrize("domain", sorted(SHIPPED))
def test_shipped_pruner_keeps_few_agents_on_its_training_tasks(domain: str) -> None:
    """The point of training on the weak model's records: small teams (AGP's gpt-4o-mini records keep 7.6 of 9
    general and 3.5 of 4 math agents), never an empty one."""
    records = load_records(RECORDS_DIR / SHIPPED[domain])
    pruner = GraphPruner.load(domain)  # the real MiniLM encoder
    kept = [len(pruner.choose(r.task).kept) for r in records[:20]]
    assert min(kept) >= 1 and sum(kept) / len(kept) <= 2.0


def _items(n: int) -> list[BenchmarkItem]:
    return [BenchmarkItem(f"t{i}", "toy", AgentTask(f"What is {i} + 1?", "number"), (str(i + 1),)) for i in range(n)]


def _score(item: BenchmarkItem, answer: str) -> float:
    return float(answer == item.gold[0])


def test_concurrent_collection_equals_sequential(tmp_path) -> None:
    pool = get_pool("math")

    def reply(system: str, user: str) -> str:  # only the Inspector is right; longer teams cost more tokens
        q = int(user.split("What is ")[1].split(" ")[0])
        return f"The answer is {q + 1}" if system.startswith(pool.roles[3].prompt) else "The answer is 0"

    config = Stage1Config(sizes=(1, 2, 4), samples_per_size=2, seed=3)
    kwargs = {"score": _score, "config": config, "progress": False}
    seq = collect_stage1(_items(6), pool, RecordingModel(reply), out_path=tmp_path / "a.json", **kwargs)
    par = collect_stage1(_items(6), pool, RecordingModel(reply), out_path=tmp_path / "b.json", concurrency=4, **kwargs)
    assert [(r.task, r.mask, r.edge_weight, r.score, r.tokens) for r in par] == [
        (r.task, r.mask, r.edge_weight, r.score, r.tokens) for r in seq
    ]
    assert load_records(tmp_path / "b.json") == par  # saved in the items' order


def test_collect_domain_interleaves_train_splits_and_resumes(tmp_path) -> None:
    agp = tmp_path / "agp"
    agp.mkdir()
    train = [{"question": f"Sam has {i} toys and finds 1. How many toys?", "final_ans": str(i + 1)} for i in range(4)]
    test = [{"question": "Sam has 0 toys and finds 1. How many toys?", "final_ans": "1"}]  # also in train: dropped
    (agp / "multiarith_train.json").write_text(json.dumps(train))
    (agp / "multiarith_test.json").write_text(json.dumps(test))
    svamp = [
        {"ID": f"s{i}", "Body": f"A jar has {i} coins", "Question": "How many coins?", "Answer": i} for i in range(3)
    ]
    (agp / "svamp_train.json").write_text(json.dumps(svamp))
    (agp / "svamp_test.json").write_text(json.dumps(svamp[:1]))
    model = RecordingModel("The answer is 1")
    out = tmp_path / "math_fake.json"
    config = Stage1Config(sizes=(1,), samples_per_size=1)
    records = collect_domain("math", model, out, limit=2, data_dir=tmp_path, config=config, progress=False)
    tasks = [r.task for r in records]
    assert len(tasks) == 4 and "coins" in tasks[1] and "toys" in tasks[0]  # interleaved multiarith / svamp
    assert not any("Sam has 0 toys" in t or "has 0 coins" in t for t in tasks)  # evaluation items never run
    more = collect_domain("math", model, out, limit=3, data_dir=tmp_path, config=config, progress=False)
    assert len(more) == 5 and len(model.calls) == 5  # the resumed run only ran the one new task
    with pytest.raises(UnknownBenchmarkError):
        collect_domain("code", model, tmp_path / "code.json", limit=1, data_dir=tmp_path)
