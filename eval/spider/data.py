"""Spider on disk: examples, schemas and database paths, in the official layout.

`<data>/dev.json`, `<data>/train_spider_slim.json` (or the official `train_spider.json`),
`<data>/tables.json` and `<data>/database/<db_id>/<db_id>.sqlite`. Examples whose database file is
missing (dev: `wta_1`, 62 questions) are set aside and counted, never scored.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from prunekit.nl2sql.schema import Schema, load_spider_tables

__all__ = ["SPLIT_FILES", "SpiderExample", "SpiderSplit", "database_path", "load_spider", "load_tables"]

SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "dev": ("dev.json",),
    "train": ("train_spider_slim.json", "train_spider.json"),
}


@dataclass(frozen=True)
class SpiderExample:
    index: int  # position in the split file
    db_id: str
    question: str
    query: str
    db_path: Path


@dataclass
class SpiderSplit:
    """The runnable examples of a split and what was skipped for want of a database file."""

    name: str
    data_dir: Path
    examples: list[SpiderExample]
    skipped: list[SpiderExample] = field(default_factory=list)

    @property
    def missing_databases(self) -> dict[str, int]:
        """db_id -> number of skipped examples."""
        return dict(Counter(e.db_id for e in self.skipped))

    @property
    def total(self) -> int:
        return len(self.examples) + len(self.skipped)


def database_path(data_dir: str | Path, db_id: str) -> Path:
    return Path(data_dir) / "database" / db_id / f"{db_id}.sqlite"


def _split_file(data_dir: Path, split: str) -> Path:
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown Spider split {split!r}; choose one of {sorted(SPLIT_FILES)}")
    for name in SPLIT_FILES[split]:
        path = data_dir / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"no {' or '.join(SPLIT_FILES[split])} in {data_dir}")


def load_spider(data_dir: str | Path, split: str = "dev", *, limit: int | None = None) -> SpiderSplit:
    """The examples of `split` whose database exists (in file order), and the skipped ones.

    `limit` keeps the first `limit` runnable examples.
    """
    data_dir = Path(data_dir)
    entries = json.loads(_split_file(data_dir, split).read_text())
    exists: dict[str, bool] = {}
    runnable: list[SpiderExample] = []
    skipped: list[SpiderExample] = []
    for i, entry in enumerate(entries):
        db_id = entry["db_id"]
        path = database_path(data_dir, db_id)
        if db_id not in exists:
            exists[db_id] = path.is_file()
        example = SpiderExample(i, db_id, entry["question"], entry["query"], path)
        (runnable if exists[db_id] else skipped).append(example)
    if limit is not None:
        runnable = runnable[:limit]
    return SpiderSplit(split, data_dir, runnable, skipped)


def load_tables(data_dir: str | Path) -> dict[str, Schema]:
    """The schemas of `<data>/tables.json`, by db_id."""
    return load_spider_tables(Path(data_dir) / "tables.json")
