"""Supervised examples of LearNAT's first stage: the agent's prompts on train questions, answered with the gold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunekit.nl2sql import prompts
from prunekit.nl2sql.retrieval import DemoIndex, load_train_examples
from prunekit.nl2sql.schema import introspect_sqlite
from prunekit.nl2sql.sft_data import build_sft_examples, heldout_databases, read_sft_examples, training_schema
from tests.nl2sql.fakes import bag_of_words
from tests.nl2sql.toydb import make_toy_db

JOIN = (
    "SELECT T1.name FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id "
    "GROUP BY T1.name HAVING count(*) > 1"
)


def test_heldout_databases_are_a_seeded_share_of_at_least_one() -> None:
    ids = [f"db{i}" for i in range(40)] * 3
    first = heldout_databases(ids, 0.1, 0)
    assert first == heldout_databases(list(reversed(ids)), 0.1, 0) and len(first) == 4 and first == sorted(first)
    assert heldout_databases(ids, 0.1, 1) != first
    assert len(heldout_databases(["a", "b"], 0.1, 0)) == 1
    with pytest.raises(ValueError):
        heldout_databases(ids, 1.0, 0)


def test_the_training_schema_shows_what_the_gold_query_needs(tmp_path: Path) -> None:
    schema = introspect_sqlite(make_toy_db(tmp_path / "toy.sqlite"))
    linked = schema.subset(["singer"], {"singer": ["singer_id", "age"]})  # linking missed a table and a column
    shown = training_schema(schema, linked, JOIN)
    assert [t.name for t in shown.tables] == ["singer", "singer_in_concert"]
    assert {c.name for c in shown.table("singer").columns} == {"singer_id", "age", "name"}
    assert "singer_id" in {c.name for c in shown.table("singer_in_concert").columns}


@pytest.fixture
def spider_dir(tmp_path: Path) -> Path:
    for db_id in ("toy", "toy2"):
        (tmp_path / "database" / db_id).mkdir(parents=True)
        make_toy_db(tmp_path / "database" / db_id / f"{db_id}.sqlite")
    rows = [
        {"db_id": "toy", "question": "How many singers are there?", "query": "SELECT count(*) FROM singer"},
        {"db_id": "toy", "question": "Which singers sang more than once?", "query": JOIN},
        {"db_id": "toy2", "question": "How many stadiums are there?", "query": "SELECT count(*) FROM stadium"},
        {"db_id": "gone", "question": "Anything?", "query": "SELECT 1"},
    ]
    (tmp_path / "train_spider_slim.json").write_text(json.dumps(rows))
    return tmp_path


def test_examples_are_the_agent_prompts_with_gold_answers_and_resume(spider_dir: Path) -> None:
    index = DemoIndex.build(load_train_examples(spider_dir / "train_spider_slim.json"), bag_of_words)
    out = spider_dir / "sft.jsonl"
    counts = build_sft_examples(spider_dir, out, heldout=["toy2"], index=index, embed=bag_of_words, progress=False)
    assert counts["written"] == 4 and counts["no_database"] == 1 and counts["questions"] == 3
    examples = read_sft_examples(out)
    assert {e.db_id for e in examples} == {"toy"} and {e.format for e in examples} == {"direct", "decompose"}
    direct = next(e for e in examples if e.format == "direct" and e.index == 1)
    assert direct.target == prompts.demo_sql(JOIN)
    assert (
        direct.messages[0]["content"] == prompts.SYSTEM_SQL
        and "CREATE TABLE singer_in_concert" in (direct.messages[-1]["content"])
    )
    # demonstrations come from other databases only: never the question itself or its neighbours
    shown = " ".join(m["content"] for m in direct.messages[1:-1])
    assert "How many singers" not in shown and "How many stadiums" in shown
    decompose = next(e for e in examples if e.format == "decompose" and e.index == 1)
    assert decompose.target.startswith("Sub-question 1:") and decompose.target.endswith(
        f"Final SQL: {prompts.demo_sql(JOIN)}"
    )
    steps, final = prompts.parse_steps(decompose.target)  # the agent parses what it learns to write
    assert final == prompts.demo_sql(JOIN) and len(steps) >= 2
    again = build_sft_examples(spider_dir, out, heldout=["toy2"], index=index, embed=bag_of_words, progress=False)
    assert again["written"] == 0 and again["already_done"] == 2
