"""`NL2SQLResult`: its usage is the sum of its call records, and `to_dict` keeps the shape the CLI and evals print."""

from __future__ import annotations

from prunekit.decoding.types import Usage
from prunekit.nl2sql.result import NL2SQLResult, template_answer

CALLS = [
    {"node": "draft", "prompt_tokens": 90, "completion_tokens": 8, "seconds": 0.5},
    {"node": "repair", "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0, "error": "refused"},
    {"node": "compose", "prompt_tokens": 40, "completion_tokens": 2, "seconds": 0.25},
]


def test_usage_sums_one_call_per_record() -> None:
    result = NL2SQLResult("q", "/db", "SELECT 1", calls=CALLS)
    assert result.usage == Usage(prompt_tokens=130, completion_tokens=10, calls=3, seconds=0.75)
    assert NL2SQLResult("q", "/db", None).usage == Usage()


def test_to_dict_keeps_its_keys_and_adds_the_reason_only_when_rows_were_cut() -> None:
    result = NL2SQLResult("q", "/db", "SELECT 1", rows=[(1,)], calls=CALLS)
    out = result.to_dict()
    assert list(out) == [
        "question",
        "db_path",
        "sql",
        "columns",
        "rows",
        "answer",
        "error",
        "steps",
        "candidates",
        "demos",
        "calls",
        "seconds",
        "method",
        "llm_calls",
        "tokens",
    ]
    assert out["rows"] == [[1]] and out["llm_calls"] == 3 and out["tokens"] == 140
    result.truncated_reason = "the row cap of 10000 rows"
    assert result.to_dict()["truncated_reason"] == "the row cap of 10000 rows"


def test_template_answer() -> None:
    assert template_answer(("n",), []) == "No rows match the question."
    assert template_answer(("n",), [(4,)]) == "The answer is 4."
    assert template_answer(("a", "b"), [(1, 2)]) == "The answer is a = 1, b = 2."
    rows = [(i,) for i in range(7)]
    assert template_answer(("n",), rows) == "7 rows match: 0, 1, 2, 3, 4 and 2 more."
