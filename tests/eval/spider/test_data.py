"""Spider on disk: runnable examples and the ones skipped for a missing database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunekit.eval.spider.data import database_path, load_spider, load_tables
from tests.conftest import require_data
from tests.nl2sql.toydb import make_toy_db


def test_data_module_without_shared_data(tmp_path: Path) -> None:
    (tmp_path / "dev.json").write_text(
        json.dumps(
            [
                {"db_id": "toy", "question": "How many singers?", "query": "SELECT count(*) FROM singer"},
                {"db_id": "gone", "question": "Anything?", "query": "SELECT 1"},
                {"db_id": "toy", "question": "Names?", "query": "SELECT name FROM singer"},
            ]
        )
    )
    make_toy_db(_mkdir(database_path(tmp_path, "toy")))
    split = load_spider(tmp_path, "dev")
    assert [e.index for e in split.examples] == [0, 2]
    assert split.missing_databases == {"gone": 1} and split.total == 3
    assert split.examples[0].db_path == tmp_path / "database" / "toy" / "toy.sqlite"
    assert [e.index for e in load_spider(tmp_path, "dev", limit=1).examples] == [0]
    with pytest.raises(FileNotFoundError):
        load_spider(tmp_path, "train")
    with pytest.raises(ValueError):
        load_spider(tmp_path, "test")


def _mkdir(path: Path) -> Path:
    path.parent.mkdir(parents=True)
    return path


@pytest.mark.data
def test_real_dev_split() -> None:
    split = load_spider(require_data("spider"), "dev")
    assert (len(split.examples), len(split.skipped), split.total) == (972, 62, 1034)
    assert split.missing_databases == {"wta_1": 62}
    assert all(e.db_path.is_file() for e in split.examples)
    train = load_spider(require_data("spider"), "train")
    assert train.total == 7000 and set(train.missing_databases) == {"baseball_1", "soccer_1"}
    assert len(load_tables(require_data("spider"))) == 166
