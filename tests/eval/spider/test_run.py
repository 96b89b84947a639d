"""The Spider runner: seeded stratified subsets, methods side by side, metrics, skipped databases."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from prunekit.eval.spider.data import SpiderExample, load_spider
from prunekit.eval.spider.run import METHODS, evaluate_examples, evaluate_spider, stratified_sample
from prunekit.nl2sql import prompts
from prunekit.nl2sql.agent import NL2SQLAgent
from prunekit.nl2sql.agent_config import AgentConfig
from prunekit.nl2sql.retrieval import DemoIndex, TrainExample, load_train_examples
from tests.conftest import require_data
from tests.nl2sql.fakes import ScriptedModel, bag_of_words
from tests.nl2sql.toydb import make_toy_db


def _examples(n_per_db: dict[str, int]) -> list[SpiderExample]:
    out, i = [], 0
    for db, n in n_per_db.items():
        for _ in range(n):
            out.append(SpiderExample(i, db, f"q{i}", "SELECT 1", Path(f"/nowhere/{db}.sqlite")))
            i += 1
    return out


def test_stratified_sample_is_seeded_proportional_and_ordered() -> None:
    pool = _examples({"a": 50, "b": 30, "c": 15, "d": 5})
    first = stratified_sample(pool, 20, seed=3)
    assert first == stratified_sample(pool, 20, seed=3)
    assert first != stratified_sample(pool, 20, seed=4)
    assert len(first) == 20 and len({e.index for e in first}) == 20
    assert [e.index for e in first] == sorted(e.index for e in first)
    counts = Counter(e.db_id for e in first)
    for db, size in {"a": 50, "b": 30, "c": 15, "d": 5}.items():
        quota = 20 * size / 100
        assert math.floor(quota) <= counts[db] <= math.ceil(quota)
    assert stratified_sample(pool, 500) == pool
    assert stratified_sample(pool, 0) == []


GOOD = "SELECT count(*) FROM singer WHERE country = 'France'"


@pytest.fixture(scope="module")
def toy_examples(tmp_path_factory: pytest.TempPathFactory) -> list[SpiderExample]:
    db = make_toy_db(tmp_path_factory.mktemp("run") / "toy.sqlite")
    return [
        SpiderExample(0, "toy", "How many singers are from France?", GOOD, db),
        SpiderExample(
            1,
            "toy",
            "What are the names of all stadiums ordered by capacity?",
            "SELECT name FROM stadium ORDER BY capacity",
            db,
        ),
    ]


def test_methods_side_by_side_with_a_scripted_model(toy_examples: list[SpiderExample]) -> None:
    def respond(messages, params):
        if messages[0]["content"] == prompts.SYSTEM_STEPS:
            return f"Sub-question 1: How many?\nSQL: {GOOD}\nFinal SQL: {GOOD}"
        return GOOD  # right for the first question, wrong for the second

    index = DemoIndex.build(
        [TrainExample(0, "x", "How many cars are there?", "SELECT count(*) FROM cars")], bag_of_words
    )
    agent = NL2SQLAgent(ScriptedModel(respond), index=index, embed=bag_of_words, config=AgentConfig(k_demos=1))
    metrics, items = evaluate_examples(toy_examples, agent, methods=METHODS, concurrency=2)
    assert metrics["gold.ex"] == 1.0 and metrics["gold.em"] == 1.0 and metrics["gold.llm_calls"] == 0
    for method in ("single_shot", "single_shot_demos", "learnat"):
        assert metrics[f"{method}.ex"] == 0.5
        assert metrics[f"{method}.tokens"] > 0
    assert metrics["single_shot.llm_calls"] == 1.0
    assert metrics["learnat.llm_calls"] >= 2.0
    levels = {it["hardness"] for it in items}
    assert all(f"gold.ex_{lv}" in metrics for lv in levels)
    assert [it["index"] for it in items] == [0, 1]
    assert items[0]["learnat"]["candidates"] and items[1]["single_shot"]["reason"] != "match"
    assert items[0]["single_shot_demos"]["demos"] == [0]


def test_a_failing_method_scores_zero_without_stopping_the_run(toy_examples: list[SpiderExample]) -> None:
    def respond(messages, params):
        raise RuntimeError("backend down")

    agent = NL2SQLAgent(ScriptedModel(respond), embed=bag_of_words)
    metrics, items = evaluate_examples(toy_examples, agent, methods=("gold", "single_shot"), concurrency=2)
    assert metrics["gold.ex"] == 1.0 and metrics["single_shot.ex"] == 0.0
    assert "backend down" in items[0]["single_shot"]["error"]


def test_unknown_method_is_refused(toy_examples: list[SpiderExample]) -> None:
    with pytest.raises(ValueError):
        evaluate_examples(toy_examples, None, methods=("oracle",))  # type: ignore[arg-type]


def test_gold_scores_one_on_real_dev_and_skips_are_counted() -> None:
    data = require_data("spider/dev.json").parent
    result = evaluate_spider(None, data, limit=40, methods=("gold",))
    assert result.metrics["gold.ex"] == 1.0
    assert result.config["n_examples"] == 40
    assert result.config["n_skipped"] == 62 and result.config["skipped_databases"] == {"wta_1": 62}
    assert result.config["n_runnable"] == 972
    assert sum(result.config["hardness_counts"].values()) == 40


def test_small_real_run_with_the_embedded_model(embedded_model) -> None:
    data = require_data("spider/dev.json").parent
    from prunekit.decoding.backends.embeddings import load_embedder

    embed = load_embedder()
    # a small index keeps the test fast; the full one is cached by DemoIndex.from_spider
    index = DemoIndex.build(load_train_examples(data / "train_spider_slim.json")[:150], embed)
    result = evaluate_spider(
        embedded_model, data, limit=3, index=index, embed=embed, concurrency=4, agent_config=AgentConfig(max_repairs=1)
    )
    m = result.metrics
    assert m["gold.ex"] == 1.0
    assert m["single_shot.llm_calls"] == 1.0 and m["single_shot_demos.llm_calls"] == 1.0
    assert m["learnat.llm_calls"] >= 2.0
    for method in ("single_shot", "single_shot_demos", "learnat"):
        assert 0.0 <= m[f"{method}.ex"] <= 1.0 and m[f"{method}.tokens"] > 0
    assert len(result.items) == 3
    assert load_spider(data).examples[0].db_id  # the split still loads after the run


def test_variants_run_side_by_side_under_their_own_names(toy_examples: list[SpiderExample]) -> None:
    """Two models (e.g. with and without the SQL adapter) in one run: figures under method[variant], gold once."""
    right = ScriptedModel(lambda messages, params: GOOD)
    broken = ScriptedModel(lambda messages, params: "SELECT nothing FROM nowhere")
    agents = {
        "shipped": NL2SQLAgent(right, embed=bag_of_words, config=AgentConfig(k_demos=0, max_repairs=0)),
        "none": NL2SQLAgent(broken, embed=bag_of_words, config=AgentConfig(k_demos=0, max_repairs=0)),
    }
    metrics, items = evaluate_examples(toy_examples, agents, methods=("gold", "single_shot"), concurrency=2)
    assert metrics["gold.ex"] == 1.0 and "gold[shipped].ex" not in metrics
    assert metrics["single_shot[shipped].ex"] == 0.5 and metrics["single_shot[shipped].executable"] == 1.0
    assert metrics["single_shot[none].ex"] == 0.0 and metrics["single_shot[none].executable"] == 0.0
    assert set(items[0]) >= {"gold", "single_shot[shipped]", "single_shot[none]"}
    assert len(right.calls) == len(broken.calls) == 2
