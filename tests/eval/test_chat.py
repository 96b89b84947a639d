"""`prunekit eval chat`: the question file, the answer and loop checks, the metrics, and a run on the real model."""

from __future__ import annotations

import json

import pytest

from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.types import ChatChunk, ChatResult, GenerationParams, Usage
from prunekit.eval.chat import DEFAULT_QUESTIONS, evaluate_chat, has_answer, load_questions, repeated_ngram

LOOP = "la France, " * 20


class ScriptedModel:
    """Loops without the guard and answers with it; raises for an unknown question (fault injection)."""

    name = "scripted"

    def __init__(self) -> None:
        self.seen: list[GenerationParams] = []

    def chat(self, messages, params=None):
        self.seen.append(params)
        question = messages[-1]["content"]
        if question == "boom":
            raise RuntimeError("backend down")
        if params.repeats_penalized:
            return ChatResult("The capital of France is Paris.", "stop", Usage(10, 8), self.name)
        return ChatResult(LOOP, "length", Usage(10, 40), self.name)

    def stream(self, messages, params=None):
        result = self.chat(messages, params)
        yield ChatChunk(result.text, result.finish_reason, result.usage)


def write(tmp_path, rows):
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_the_shipped_questions_load_and_are_enough():
    questions = load_questions(DEFAULT_QUESTIONS)
    assert len(questions) >= 60
    assert len({q["question"] for q in questions}) == len(questions)  # no duplicates


@pytest.mark.parametrize(
    ("reply", "answers", "found"),
    [
        ("The capital of France is PARIS.", ["Paris"], True),
        ("It has 120 pages.", ["12"], False),  # whole words only
        ("Its symbol is Na.", ["Na"], True),
        ("A national park.", ["Na"], False),
        ("Plants take in CO2.", ["carbon dioxide", "CO2"], True),
        ("It is H₂O.", ["H2O", "H₂O"], True),
        ("Buenos  Aires", ["Buenos Aires"], False),
    ],
)
def test_has_answer(reply, answers, found):
    assert has_answer(reply, answers) is found


def test_repeated_ngram_counts_word_four_grams_three_times():
    assert repeated_ngram(LOOP)
    assert not repeated_ngram("of the balcony of the balcony")  # twice is not a loop
    assert repeated_ngram("of the balcony of the balcony of the balcony of the")
    assert not repeated_ngram("Paris is the capital of France, and France is in Europe.")


def test_metrics_per_method_and_errors_are_recorded(tmp_path):
    path = write(
        tmp_path,
        [
            {"question": "What is the capital of France?", "answers": ["Paris"]},
            {"question": "boom", "answers": ["x"]},
        ],
    )
    model = ScriptedModel()
    result = evaluate_chat(model, path, repetition_penalty=1.1, max_tokens=40, concurrency=2)
    m = result.metrics
    assert (m["guard.correct"], m["guard.repeated_4gram"], m["guard.answer_tokens"]) == (0.5, 0.0, 8.0)
    assert (m["no_guard.correct"], m["no_guard.repeated_4gram"], m["no_guard.answer_tokens"]) == (0.0, 0.5, 40.0)
    assert m["no_guard.length_stops"] == 1.0 and m["guard.error_rate"] == 0.5
    assert {p.repetition_penalty for p in model.seen} == {1.1, 1.0}
    assert {p.max_tokens for p in model.seen} == {40}
    assert result.config["repetition_penalty"] == 1.1 and result.config["questions"] == 2
    assert sum(1 for item in result.items if item.get("error")) == 2


@pytest.mark.parametrize(
    ("rows", "fragment"),
    [
        ([{"question": "q"}], "not a question record"),
        ([{"question": "q", "answers": "Paris"}], "list"),
        ([{"question": "q", "answers": []}], "non-empty"),
    ],
)
def test_bad_question_files_name_the_line(tmp_path, rows, fragment):
    with pytest.raises(InvalidRequestError, match=fragment):
        load_questions(write(tmp_path, rows))


def test_missing_file_and_unknown_method(tmp_path):
    with pytest.raises(InvalidRequestError, match="does not exist"):
        load_questions(tmp_path / "nope.jsonl")
    with pytest.raises(InvalidRequestError, match="methods"):
        evaluate_chat(ScriptedModel(), DEFAULT_QUESTIONS, repetition_penalty=1.1, methods=("beam",))


@pytest.mark.slow
def test_three_questions_on_the_embedded_model(embedded_model, tmp_path):
    from prunekit.eval.harness import write_results

    result = evaluate_chat(embedded_model, DEFAULT_QUESTIONS, repetition_penalty=1.1, limit=3, max_tokens=64)
    assert len(result.items) == 6 and not any(item.get("error") for item in result.items)
    for method in ("guard", "no_guard"):
        assert 0.0 <= result.metrics[f"{method}.correct"] <= 1.0
        assert 0 < result.metrics[f"{method}.answer_tokens"] <= 64
    # the first question is the France loop (tests/decoding/backends/test_llamacpp.py): the guard ends it
    france = {item["method"]: item for item in result.items if "France" in item["question"]}
    assert not france["guard"]["repeated_4gram"]
    write_results(result, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["task"] == "chat"
