"""Runs that append one JSON line per item: whole lines under concurrency, a torn last line dropped."""

from __future__ import annotations

from pathlib import Path

from prunekit.nl2sql.jsonl_runs import append_records, drop_torn_tail, read_records


def test_every_item_becomes_one_whole_line_and_is_counted_once(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    seen: list[int] = []
    items = list(range(40))
    append_records(
        items,
        lambda i: {"index": i, "text": "x" * (i * 50)},  # lines of many sizes, written by 8 threads
        out,
        on_record=lambda record: seen.append(record["index"]),
        concurrency=8,
        desc="test",
        unit="item",
        progress=False,
    )
    assert sorted(seen) == items
    assert sorted(r["index"] for r in read_records(out)) == items


def test_a_torn_last_line_is_dropped_and_skipped(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    out.write_text('{"index": 0}\n{"index": 1}\n{"ind')
    assert [r["index"] for r in read_records(out)] == [0, 1]
    drop_torn_tail(out)
    assert out.read_text() == '{"index": 0}\n{"index": 1}\n'
    assert read_records(tmp_path / "missing.jsonl") == []
    drop_torn_tail(tmp_path / "missing.jsonl")  # nothing to do
