"""Long training-data runs that append one JSON line per item and continue where they stopped.

Decomposition search (`synthesis`) and pair mining (`pair_mining`) both work through thousands of training
questions with LLM calls: items run on a thread pool, each finished item is appended as one whole line (one
writer at a time), and a run killed at any moment loses at most the line it was writing (`drop_torn_tail`),
so the next run skips what is on file and carries on.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["append_records", "drop_torn_tail", "read_records"]

log = logging.getLogger(__name__)

Item = TypeVar("Item")


def drop_torn_tail(path: Path) -> None:
    """Cut a last line without its newline (a run killed mid-write), so the next line starts clean."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        log.warning("dropping a torn last line of %s (%d bytes)", path, len(data) - keep)
        with path.open("r+b") as f:
            f.truncate(keep)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The JSON records of a file (none when it does not exist; a torn line is skipped)."""
    path = Path(path)
    records: list[dict[str, Any]] = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def append_records(
    items: Sequence[Item],
    work: Callable[[Item], dict[str, Any]],
    out: Path,
    *,
    on_record: Callable[[dict[str, Any]], None],
    concurrency: int,
    desc: str,
    unit: str,
    progress: bool,
) -> None:
    """Run `work` on every item (`concurrency` at a time); append each record to `out` as one JSON line and hand
    it to `on_record` (under the writer's lock, so counters need no lock of their own)."""
    lock = threading.Lock()
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=desc, unit=unit)

    def run(item: Item) -> None:
        record = work(item)
        line = json.dumps(record, default=str)
        with lock:  # one writer at a time: every line is whole
            with out.open("a") as f:
                f.write(line + "\n")
            on_record(record)
            if bar is not None:
                bar.update(1)

    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            for future in [pool.submit(run, item) for item in items]:
                future.result()
    finally:
        if bar is not None:
            bar.close()
