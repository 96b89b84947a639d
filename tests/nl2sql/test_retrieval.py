"""Demonstration retrieval: skeletons, question masking, ranking, exclusions and the on-disk cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunekit.nl2sql.retrieval import (
    DemoIndex,
    RetrievalError,
    TrainExample,
    load_train_examples,
    mask_question,
    sql_skeleton,
)
from prunekit.nl2sql.schema import Column, Schema, Table
from tests.conftest import require_data
from tests.nl2sql.fakes import CountingEmbedder, bag_of_words

SKELETONS = [
    ("SELECT name FROM singer WHERE age > 20", "SELECT _ FROM _ WHERE _ > _"),
    ('SELECT count(*) FROM head WHERE name = "Tom"', "SELECT COUNT(*) FROM _ WHERE _ = _"),
    (
        "SELECT T1.name FROM a AS T1 JOIN b AS T2 ON T1.id = T2.aid GROUP BY T1.name HAVING count(*) > 2",
        "SELECT _ FROM _ JOIN _ ON _ = _ GROUP BY _ HAVING COUNT(*) > _",
    ),
    ("SELECT x FROM a EXCEPT SELECT x FROM b", "SELECT _ FROM _ EXCEPT SELECT _ FROM _"),
    ("SELECT avg(age) AS mean_age FROM people", "SELECT AVG(_) FROM _"),
]


@pytest.mark.parametrize(("sql", "skeleton"), SKELETONS)
def test_sql_skeleton_masks_values_and_identifiers(sql: str, skeleton: str) -> None:
    assert sql_skeleton(sql) == skeleton


def test_sql_skeleton_falls_back_on_unparsable_text() -> None:
    out = sql_skeleton("SELECT name FROM WHERE 'x' = 3 ((")
    assert "name" not in out and "'x'" not in out and "3" not in out


def test_mask_question_hides_schema_words_numbers_and_values() -> None:
    schema = Schema("d", (Table("singer", (Column("singer_id"), Column("country"), Column("age"))),))
    masked = mask_question('How many singers from "France" are older than 30 in New York City?', schema)
    assert masked == "How many <mask> from <val> are older than <num> in <val> ?"


EXAMPLES = [
    TrainExample(0, "db_a", "How many students are there?", "SELECT count(*) FROM student"),
    TrainExample(1, "db_a", "List the names of students older than 20.", "SELECT name FROM student WHERE age > 20"),
    TrainExample(2, "db_b", "How many cars are there?", "SELECT count(*) FROM car"),
    TrainExample(3, "db_b", "How many cars are there in total?", "SELECT count(*) FROM car"),
    TrainExample(4, "db_c", "Show the names of people ordered by age.", "SELECT name FROM people ORDER BY age"),
]


@pytest.fixture
def index() -> DemoIndex:
    return DemoIndex.build(EXAMPLES, bag_of_words)


def test_retrieve_ranks_by_question_and_carries_decompositions(index: DemoIndex) -> None:
    demos = index.retrieve("How many teachers are there?", k=2)
    assert [d.index for d in demos][:1] in ([0], [2], [3])
    assert all(d.steps and d.steps[-1].sql for d in demos)
    assert demos[0].score >= demos[1].score


def test_retrieve_drops_repeated_sql(index: DemoIndex) -> None:
    demos = index.retrieve("How many cars are there?", k=3)
    sqls = [d.sql.lower() for d in demos]
    assert len(sqls) == len(set(sqls)) == 3


def test_exclusions_by_index_and_database(index: DemoIndex) -> None:
    index.exclude(db_ids=["db_b"])
    assert all(d.db_id != "db_b" for d in index.retrieve("How many cars are there?", k=5))
    index.exclude(indices=[0])
    assert [d.index for d in index.retrieve("How many cars are there?", k=5)] == [1, 4]
    index.clear_exclusions()
    assert len(index.retrieve("How many cars are there?", k=5)) == 4  # 2 and 3 share their SQL
    assert all(d.db_id != "db_c" for d in index.retrieve("How many cars?", k=5, exclude_db="db_c"))


def test_draft_skeleton_is_a_second_signal(index: DemoIndex) -> None:
    question = "What are the names?"
    plain = index.retrieve(question, k=1)
    ordered = index.retrieve(question, k=1, draft_sql="SELECT title FROM book ORDER BY year", skeleton_weight=5.0)
    assert ordered[0].index == 4
    assert plain[0].index != 4 or plain[0].score < ordered[0].score


def test_bad_k_is_refused(index: DemoIndex) -> None:
    with pytest.raises(RetrievalError):
        index.retrieve("x", k=-1)
    assert index.retrieve("x", k=0) == []


def _write_data(root: Path) -> Path:
    rows = [{"db_id": e.db_id, "question": e.question, "query": e.query} for e in EXAMPLES]
    (root / "train_spider_slim.json").write_text(json.dumps(rows))
    (root / "dev.json").write_text(json.dumps(rows))
    (root / "tables.json").write_text("[]")
    return root


def test_from_spider_caches_on_disk_and_never_reembeds(tmp_path: Path) -> None:
    data = _write_data(tmp_path)
    embed = CountingEmbedder()
    first = DemoIndex.from_spider(data, embed, cache_dir=tmp_path / "cache", progress=False)
    assert embed.n_texts == 2 * len(EXAMPLES)  # questions and skeletons, once
    assert len(list((tmp_path / "cache").glob("nl2sql-demos-*.npz"))) == 1
    second = DemoIndex.from_spider(data, embed, cache_dir=tmp_path / "cache", progress=False)
    assert embed.n_texts == 2 * len(EXAMPLES)
    assert (second.question_vecs == first.question_vecs).all()
    second.retrieve("How many cars?", k=1)
    assert embed.n_texts == 2 * len(EXAMPLES) + 1  # one query text per retrieval


def test_dev_is_never_indexed(tmp_path: Path) -> None:
    data = _write_data(tmp_path)
    with pytest.raises(RetrievalError):
        DemoIndex.from_spider(data, bag_of_words, cache_dir=tmp_path, train_file="dev.json")
    with pytest.raises(RetrievalError):
        load_train_examples(data / "dev.json")


def test_real_training_file_loads() -> None:
    path = require_data("spider/train_spider_slim.json")
    examples = load_train_examples(path)
    assert len(examples) == 7000 and examples[0].index == 0
