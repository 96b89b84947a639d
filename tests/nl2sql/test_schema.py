"""Schemas: SQLite introspection, Spider's tables.json, prompt text and oracle-free schema linking."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from prunekit.nl2sql.errors import DatabaseNotFoundError
from prunekit.nl2sql.schema import (
    Column,
    ForeignKey,
    Schema,
    Table,
    ValueIndex,
    introspect_sqlite,
    link_schema,
    load_spider_tables,
    render_schema,
    with_examples,
)
from tests.conftest import require_data
from tests.nl2sql.toydb import make_toy_db


@pytest.fixture(scope="module")
def toy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_db(tmp_path_factory.mktemp("schema") / "toy.sqlite")


@pytest.fixture(scope="module")
def toy(toy_path: Path) -> Schema:
    return introspect_sqlite(toy_path, n_examples=3)


def fake_embed(texts: list[str]) -> np.ndarray:
    """A deterministic bag-of-words embedder: each word hashes to one of 64 dimensions."""
    out = np.zeros((len(texts), 64))
    for i, text in enumerate(texts):
        for word in text.lower().replace("_", " ").split():
            word = word.strip("?,.'\"").rstrip("s")
            if word:
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
    return out


def test_introspection_reads_tables_columns_keys_and_examples(toy: Schema) -> None:
    assert toy.db_id == "toy"
    assert [t.name for t in toy.tables] == ["stadium", "singer", "concert", "singer_in_concert", "score"]
    singer = toy.table("SINGER")
    assert singer is not None
    assert [c.name for c in singer.columns] == ["singer_id", "name", "country", "age", "is_male"]
    assert singer.column("age") == Column("age", "INTEGER", False, (52, 32, 29))
    assert singer.primary_keys == ("singer_id",)
    assert toy.table("singer_in_concert").primary_keys == ("concert_id", "singer_id")
    assert set(toy.foreign_keys) == {
        ForeignKey("concert", "stadium_id", "stadium", "stadium_id"),
        ForeignKey("singer_in_concert", "concert_id", "concert", "concert_id"),
        ForeignKey("singer_in_concert", "singer_id", "singer", "singer_id"),
    }
    # examples are distinct and never NULL
    assert toy.table("singer").column("country").examples == ("Netherlands", "United States", "France")
    assert toy.table("score").column("value").examples == (0.1, 0.2, 0.3)


def test_introspection_does_not_touch_the_file(toy_path: Path) -> None:
    before = toy_path.read_bytes()
    introspect_sqlite(toy_path)
    assert toy_path.read_bytes() == before
    with pytest.raises(DatabaseNotFoundError):
        introspect_sqlite(toy_path.parent / "missing.sqlite")


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("these are notes, not tables\n" * 50)
    with pytest.raises(DatabaseNotFoundError, match="not a readable SQLite database"):
        introspect_sqlite(notes)


def test_render_schema_is_compact_create_table_text(toy: Schema) -> None:
    text = render_schema(toy)
    assert "CREATE TABLE singer (\n  singer_id INTEGER PRIMARY KEY, -- e.g. 1, 2, 3\n" in text
    assert "  country TEXT, -- e.g. 'Netherlands', 'United States', 'France'\n" in text
    assert "  PRIMARY KEY (concert_id, singer_id),\n" in text
    assert "  FOREIGN KEY (singer_id) REFERENCES singer(singer_id)\n);" in text
    assert "Stark''s Park" in text  # quotes in values are escaped as in SQL
    bare = render_schema(toy, examples=False, foreign_keys=False)
    assert "e.g." not in bare and "FOREIGN KEY" not in bare
    odd = Schema("x", (Table("my table", (Column("first name", "TEXT"),)),))
    assert render_schema(odd) == 'CREATE TABLE "my table" (\n  "first name" TEXT\n);'


def test_spider_tables_json_reads_into_the_same_objects(tmp_path: Path, toy: Schema) -> None:
    entry = {
        "db_id": "toy",
        "table_names_original": ["singer", "singer_in_concert"],
        "table_names": ["singer", "singer in concert"],
        "column_names_original": [[-1, "*"], [0, "Singer_ID"], [0, "Name"], [1, "concert_ID"], [1, "Singer_ID"]],
        "column_names": [[-1, "*"], [0, "singer id"], [0, "name"], [1, "concert id"], [1, "singer id"]],
        "column_types": ["text", "number", "text", "number", "number"],
        "primary_keys": [1, [3, 4]],
        "foreign_keys": [[4, 1]],
    }
    path = tmp_path / "tables.json"
    path.write_text(json.dumps([entry]))
    schema = load_spider_tables(path)["toy"]
    assert [t.name for t in schema.tables] == ["singer", "singer_in_concert"]
    assert schema.table("singer").columns == (Column("Singer_ID", "NUMBER", True), Column("Name", "TEXT", False))
    assert schema.table("singer_in_concert").primary_keys == ("concert_ID", "Singer_ID")
    assert schema.foreign_keys == (ForeignKey("singer_in_concert", "Singer_ID", "singer", "Singer_ID"),)


def test_with_examples_fills_values_from_the_database(toy_path: Path) -> None:
    schema = Schema("toy", (Table("singer", (Column("Name", "TEXT"), Column("missing", "TEXT"))),))
    filled = with_examples(schema, toy_path, n_examples=2)
    assert filled.table("singer").column("name").examples == ("Joe Sharp", "Timbaland")
    assert filled.table("singer").column("missing").examples == ()


def test_value_index_matches_question_ngrams(toy_path: Path, toy: Schema) -> None:
    index = ValueIndex.from_sqlite(toy_path, toy)
    assert len(index) > 20
    found = index.match("Which singers come from the united states or france?")
    assert found[("singer", "country")] == ["france", "united states"]
    assert index.match("how many of them?") == {}  # stopwords and short words are never values
    capped = ValueIndex.from_sqlite(toy_path, toy, max_values_per_column=1)
    assert capped.match("france") == {}  # bounded: only one value read per column


def test_link_schema_by_value_and_name_without_an_embedder(toy_path: Path, toy: Schema) -> None:
    index = ValueIndex.from_sqlite(toy_path, toy)
    linked = link_schema("What are the names of the singers from France?", toy, values=index, top_k_tables=2)
    assert linked.table_names[0] == "singer"
    country = next(c for c in linked.columns if (c.table, c.name) == ("singer", "country"))
    assert any(r.startswith("value france") for r in country.reasons)
    assert linked.schema.table("singer") is not None
    assert "country" in [c.name for c in linked.schema.table("singer").columns]


def test_link_schema_keeps_the_bridge_table_between_linked_tables(toy: Schema) -> None:
    linked = link_schema("Which singer sang in which concert?", toy, top_k_tables=2)
    assert linked.table_names[:2] == ["singer", "concert"] or linked.table_names[:2] == ["concert", "singer"]
    assert "singer_in_concert" in linked.table_names
    bridge = next(t for t in linked.tables if t.name == "singer_in_concert")
    assert bridge.reasons == ("fk_bridge",)
    # the keys needed for the join stay in the restricted schema
    sic = linked.schema.table("singer_in_concert")
    assert {c.name for c in sic.columns} >= {"concert_id", "singer_id"}
    assert len(linked.schema.foreign_keys) == 2


def test_link_schema_uses_the_embedder(toy: Schema) -> None:
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return fake_embed(texts)

    linked = link_schema("average attendance of each stadium", toy, embed, top_k_tables=1)
    assert calls and calls[0][0] == "average attendance of each stadium"
    assert linked.table_names == ["stadium"]
    best = linked.columns[0]
    assert (best.table, best.name) == ("stadium", "average")
    assert any(r.startswith("embedding") for r in best.reasons)


@pytest.mark.data
def test_spider_tables_json_and_linking_recall_on_dev() -> None:
    """No oracle: how often the linked tables cover the gold query's tables on Spider dev."""
    from sqlglot import exp

    from prunekit.eval.spider.data import load_spider
    from prunekit.nl2sql.sqlast import parse_sql

    tables = load_spider_tables(require_data("spider/tables.json"))
    assert len(tables) == 166
    concert = tables["concert_singer"]
    assert [t.name for t in concert.tables] == ["stadium", "singer", "concert", "singer_in_concert"]
    split = load_spider(require_data("spider"), "dev")
    indexes: dict[str, ValueIndex] = {}
    recall = []
    for ex in split.examples[::4]:
        if ex.db_id not in indexes:
            indexes[ex.db_id] = ValueIndex.from_sqlite(ex.db_path, tables[ex.db_id])
        gold = {t.name.lower() for t in parse_sql(ex.query, spider_strings=True).find_all(exp.Table)}
        linked = {t.lower() for t in link_schema(ex.question, tables[ex.db_id], values=indexes[ex.db_id]).table_names}
        recall.append(len(gold & linked) / len(gold))
    mean = sum(recall) / len(recall)
    print(f"\ntable recall of schema linking (no embedder) on {len(recall)} dev questions: {mean:.3f}")
    assert mean >= 0.9
