"""`NL2SQLResult`: what a method (the agent or a baseline) answered for one question, and what it cost."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from prunekit.decoding.types import Usage

__all__ = ["NL2SQLResult", "template_answer"]


@dataclass
class NL2SQLResult:
    """What a method answered for one question, and what it cost.

    `calls` holds one record per LLM call (node, prompt and completion tokens, seconds); `usage` sums them.

    >>> result = NL2SQLResult("How many?", "/db.sqlite", "SELECT 1", calls=[
    ...     {"node": "draft", "prompt_tokens": 90, "completion_tokens": 8, "seconds": 0.5}])
    >>> result.usage.calls, result.usage.total_tokens, result.to_dict()["tokens"]
    (1, 98, 98)
    """

    question: str
    db_path: str
    sql: str | None
    columns: tuple[str, ...] = ()
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    answer: str = ""
    error: str | None = None
    steps: list[tuple[str, str | None]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    demos: list[int] = field(default_factory=list)  # training-file indices of the demonstrations
    calls: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    method: str = "learnat"
    truncated_reason: str | None = None  # why safe execution cut the answer's result (row cap, byte budget)

    @property
    def usage(self) -> Usage:
        """The LLM work behind the answer: one `Usage.call` per call record, summed."""
        return sum(
            (Usage.call(c["prompt_tokens"], c["completion_tokens"], c.get("seconds", 0.0)) for c in self.calls),
            Usage(),
        )

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data, with `llm_calls` and `tokens` (prompt + completion) added."""
        out = asdict(self)
        if self.truncated_reason is None:  # results of queries nothing was cut from read as they always did
            del out["truncated_reason"]
        out["rows"] = [list(r) for r in self.rows]
        usage = self.usage
        out.update(llm_calls=usage.calls, tokens=usage.total_tokens)
        return out


def template_answer(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """One sentence from a result, without a model.

    >>> template_answer(("count(*)",), [(4,)])
    'The answer is 4.'
    """
    if not rows:
        return "No rows match the question."
    if len(rows) == 1 and len(rows[0]) == 1:
        return f"The answer is {rows[0][0]}."
    if len(rows) == 1:
        return "The answer is " + ", ".join(f"{c} = {v}" for c, v in zip(columns, rows[0], strict=False)) + "."
    values = [str(r[0]) if len(r) == 1 else "(" + ", ".join(map(str, r)) + ")" for r in rows[:5]]
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    return f"{len(rows)} rows match: " + ", ".join(values) + more + "."
