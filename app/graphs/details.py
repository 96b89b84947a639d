"""What a route's `details` carry for people to look at (the chat page draws them): bounded, JSON-safe views of
the cores' public results.

- RAG: every retrieved passage with its sentences marked kept (the LLM read them) or dropped (`marked_passage`);
- agents: the team as a graph, every agent of the pool with whether it ran, the edges between them (`agent_team`);
- SQL: the result as a table, its first rows and columns, every value JSON-safe and short (`sql_table`).

Each view is capped (rows, columns, characters), so a large result costs the response a bounded size.

>>> text = "Paris is in France. Bananas are yellow."
>>> view = marked_passage({"source": "a.txt", "chunk": 0, "title": "", "text": text, "score": 0.5},
...                       [(0, 19), (20, 39)], kept=[0], used=True, score=2.0)
>>> [(s["text"], s["kept"]) for s in view["sentences"]]
[('Paris is in France.', True), ('Bananas are yellow.', False)]
>>> sql_table(["n", "blob"], [(1, b"\\x00\\x01"), (float("inf"), None)])["rows"]
[[1, '<2 bytes>'], ['inf', None]]
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any

__all__ = [
    "MAX_CELL_CHARS",
    "MAX_PASSAGE_CHARS",
    "MAX_TABLE_COLUMNS",
    "MAX_TABLE_ROWS",
    "agent_team",
    "marked_passage",
    "sql_table",
]

MAX_PASSAGE_CHARS = 4000  # characters of one passage's sentences shown (ingested chunks are ~800)
MAX_TABLE_ROWS = 50
MAX_TABLE_COLUMNS = 50
MAX_CELL_CHARS = 1000  # a value longer than this is cut (SQLite values may reach 1 MB)


def marked_passage(
    retrieved: Mapping[str, Any],
    spans: Sequence[tuple[int, int]],
    kept: Collection[int],
    *,
    used: bool,
    score: float,
    probs: Sequence[float] | None = None,
) -> dict[str, Any]:
    """One retrieved passage as its sentences (cut from `retrieved["text"]` at `spans`), each marked `kept` when
    the LLM read it; `used`: whether the passage went to the LLM at all; `score`: its rank score (rerank or cosine);
    `probs`: the pruner's keep probability of each sentence, when there is one."""
    text = str(retrieved["text"])
    sentences: list[dict[str, Any]] = []
    budget, truncated = MAX_PASSAGE_CHARS, False
    for i, (start, end) in enumerate(spans):
        if budget <= 0:
            truncated = True
            break
        piece = text[start:end]
        if len(piece) > budget:
            piece, truncated = piece[:budget] + "…", True
        budget -= len(piece)
        sentence: dict[str, Any] = {"text": piece, "kept": used and i in kept}
        if probs is not None and i < len(probs):
            sentence["p"] = round(float(probs[i]), 3)
        sentences.append(sentence)
    return {
        "source": retrieved.get("source"),
        "chunk": retrieved.get("chunk"),
        "title": retrieved.get("title") or "",
        "similarity": round(float(retrieved.get("score", 0.0)), 4),  # the retriever's cosine
        "score": round(float(score), 4),
        "used": used,
        "sentences": sentences,
        "truncated": truncated,
    }


def agent_team(run: Mapping[str, Any], role_names: Sequence[str]) -> dict[str, Any]:
    """The team of an agents run (`graph_pruning.solve`'s result) as a graph: every agent of the pool, `kept` when
    the pruner let it run, with the LLM calls it made; the spatial edges (who reads whom) and their weights."""
    topology = run["topology"]
    kept = set(topology["agents"])
    calls = Counter(turn["agent"] for turn in run.get("turns", []))
    agents = [
        {"id": i, "name": str(role_names[i]) if i < len(role_names) else f"agent {i}", "kept": i in kept,
         "calls": calls.get(i, 0)}
        for i in range(int(topology["n_agents"]))
    ]  # fmt: skip
    return {
        "agents": agents,
        "edges": [[int(u), int(v)] for u, v in topology["edges"]],
        "weights": list(topology.get("weights", [])),
        "rounds": int(topology.get("rounds", 1)),
        "decision_calls": calls.get(-1, 0),  # graph_pruning.execute.DECISION_AGENT: combines the agents' answers
    }


def sql_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], truncated_reason: str | None = None
) -> dict[str, Any]:
    """A query's result as a table: the first `MAX_TABLE_ROWS` rows and `MAX_TABLE_COLUMNS` columns, each value
    JSON-safe (a blob is its size, a non-finite float its name) and at most `MAX_CELL_CHARS` long."""
    width = min(len(columns), MAX_TABLE_COLUMNS)
    return {
        "columns": [_cell(str(c)) for c in columns[:width]],
        "rows": [[_cell(v) for v in row[:width]] for row in rows[:MAX_TABLE_ROWS]],
        "rows_total": len(rows),
        "columns_total": len(columns),
        "rows_truncated": truncated_reason or None,  # why execution itself cut the rows (row cap, byte budget)
    }


def _cell(value: Any) -> Any:
    """A value strict JSON can carry, short enough to show."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # JSON has no Infinity: JSON.parse would refuse it
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    text = str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS] + "…"
