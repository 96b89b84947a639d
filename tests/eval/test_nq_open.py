import json

import pytest

from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.types import ChatChunk, ChatResult, Usage, collect
from prunekit.eval.nq_open import evaluate_nq_open, load_nq_open


class ScriptedModel:
    """Answers from a dict; raises for unknown questions (fault injection)."""

    name = "scripted"

    def __init__(self, answers):
        self.answers = answers

    def chat(self, messages, params=None):
        question = messages[-1]["content"]
        if question not in self.answers:
            raise RuntimeError("backend down")
        return ChatResult(self.answers[question], "stop", Usage(10, 2), self.name)

    def stream(self, messages, params=None):
        result = self.chat(messages, params)
        yield ChatChunk(result.text, "stop", result.usage)


def write(tmp_path, rows):
    path = tmp_path / "nq.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_scores_and_errors_are_recorded(tmp_path):
    path = write(
        tmp_path,
        [
            {"question": "q1", "answer": ["Paris"]},
            {"question": "q2", "answer": ["1990", "nineteen ninety"]},
            {"question": "q3", "answer": ["x"]},
        ],
    )
    result = evaluate_nq_open(ScriptedModel({"q1": "Paris.", "q2": "in 1990"}), path, concurrency=2)
    assert result.metrics["closed_book.em"] == pytest.approx(1 / 3)
    assert result.metrics["closed_book.f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert result.metrics["closed_book.error_rate"] == pytest.approx(1 / 3)
    assert result.items[2]["error"] == "backend down"
    assert collect([ChatChunk("a")]).text == "a"


def test_limit_and_bad_files(tmp_path):
    path = write(tmp_path, [{"question": f"q{i}", "answer": ["a"]} for i in range(5)])
    assert len(load_nq_open(path, limit=2)) == 2
    with pytest.raises(InvalidRequestError, match="does not exist"):
        load_nq_open(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": 1}\n')
    with pytest.raises(InvalidRequestError, match=r"bad\.jsonl:1"):
        load_nq_open(bad)
    assert load_nq_open(path, limit=0) == []
    lone = write(tmp_path, [{"question": "q", "answer": "Paris"}])
    with pytest.raises(InvalidRequestError, match="list of strings"):
        load_nq_open(lone)
