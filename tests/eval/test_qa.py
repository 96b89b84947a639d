"""eval.qa on small hand-written HotpotQA and SQuAD files, with the shipped context pruner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.types import ChatChunk, ChatResult, Usage
from prunekit.eval.harness import write_results
from prunekit.eval.qa import READER_PROMPT, evaluate_qa, fit_context, load_qa, plot_sweep

HOTPOT = [
    {
        "id": "h1",
        "question": "In which city is the tower designed by Gustave Eiffel's company?",
        "answer": "Paris",
        "context": {
            "title": ["Eiffel Tower", "Cats", "Rivers"],
            "sentences": [
                ["The Eiffel Tower is a wrought-iron tower.", " It stands in Paris, France."],
                ["Cats are small mammals.", " They purr."],
                ["The Nile is long.", " The Amazon carries much water."],
            ],
        },
        "supporting_facts": {"title": ["Eiffel Tower", "Eiffel Tower"], "sent_id": [0, 1]},
    }
]
SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Tower",
            "paragraphs": [
                {
                    "context": "The tower was built in 1889. It is made of iron. Many tourists visit it.",
                    "qas": [
                        {
                            "id": "s1",
                            "question": "When was the tower built?",
                            "answers": [
                                {"text": "1889", "answer_start": 22},
                                {"text": "in 1889", "answer_start": 19},
                                {"text": "1889", "answer_start": 22},
                            ],
                        }
                    ],
                }
            ],
        }
    ],
}


class Reader:
    """Answers 'Paris' when the context mentions it (a scripted reader)."""

    name = "reader"

    def chat(self, messages, params=None):
        text = "Paris" if "Paris" in messages[-1]["content"] else "unknown"
        return ChatResult(text, "stop", Usage(10, 1), self.name)

    def stream(self, messages, params=None):
        yield ChatChunk(self.chat(messages).text, "stop", Usage(10, 1))


@pytest.fixture(scope="module")
def pruner():
    from prunekit.context_pruner import default_pruner

    return default_pruner()


def write_hotpot(tmp_path: Path, rows) -> Path:
    path = tmp_path / "hotpot.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({**r, "context": str(r["context"]), "supporting_facts": str(r["supporting_facts"])})
            for r in rows
        )
    )
    return path


def test_loaders_read_both_layouts(tmp_path):
    item = load_qa(write_hotpot(tmp_path, HOTPOT))[0]
    assert item.titles == ("Eiffel Tower", "Cats", "Rivers") and item.gold_passages == {0}
    assert [item.passages[0][a:b] for a, b in item.gold[0]] == [
        "The Eiffel Tower is a wrought-iron tower.",
        "It stands in Paris, France.",
    ]
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps(SQUAD))
    s = load_qa(squad)[0]
    assert s.passages[0][slice(*s.gold[0][0])] == "The tower was built in 1889."
    assert s.answers == ("1889", "in 1889")  # every distinct gold answer: F1/EM take the best
    with pytest.raises(InvalidRequestError, match="does not exist"):
        load_qa(tmp_path / "none.json")


def test_methods_side_by_side(tmp_path, pruner):
    result = evaluate_qa(Reader(), write_hotpot(tmp_path, HOTPOT), pruner=pruner, threshold=0.1, concurrency=2)
    m = result.metrics
    assert m["full.compression"] == 0.0 and m["full.evidence_recall"] == 1.0 and m["full.answer_f1"] == 1.0
    for method in ("prunekit", "biencoder", "random"):
        assert 0.0 <= m[f"{method}.compression"] <= 1.0
        assert 0.0 <= m[f"{method}.evidence_recall"] <= 1.0
        assert f"{method}.recall_at_1" in m
    # matched compression: the baselines keep at least prunekit's token budget (whole sentences)
    assert m["biencoder.compression"] <= m["prunekit.compression"] + 1e-9
    assert m["prunekit.prune_ms_per_passage"] > 0
    write_results(result, tmp_path / "out", plots=[plot_sweep])
    assert (tmp_path / "out" / "sweep.png").is_file()
    assert len(result.items) == 4


def test_without_answers_needs_no_model(tmp_path, pruner):
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps(SQUAD))
    result = evaluate_qa(None, squad, pruner=pruner, answer=False)
    assert "prunekit.answer_f1" not in result.metrics and "prunekit.recall_at_1" not in result.metrics
    with pytest.raises(InvalidRequestError, match="needs a model"):
        evaluate_qa(None, squad, pruner=pruner, answer=True)


class SmallWindowReader(Reader):
    """A scripted reader with a 60-word window that refuses longer prompts, as a real model does."""

    context_length = 60

    def encode_chat(self, messages):
        return messages[-1]["content"].split()

    def chat(self, messages, params=None):
        if len(self.encode_chat(messages)) + params.max_tokens > self.context_length:
            raise InvalidRequestError("exceeds the model's context")
        return super().chat(messages, params)


def test_a_context_longer_than_the_window_is_cut_to_fit(tmp_path, pruner):
    long = [{**HOTPOT[0], "context": {**HOTPOT[0]["context"]}}]
    long[0]["context"]["sentences"] = [*HOTPOT[0]["context"]["sentences"][:2], ["Water flows. " * 40]]
    result = evaluate_qa(SmallWindowReader(), write_hotpot(tmp_path, long), pruner=pruner, max_tokens=8)
    full = next(r for r in result.items if r["method"] == "full")
    assert "error" not in full and full["context_cut_chars"] > 0
    assert full["f1"] == 1.0  # Paris comes before the cut
    pruned = next(r for r in result.items if r["method"] == "prunekit")
    assert pruned["context_cut_chars"] == 0


def test_fit_context_with_the_embedded_model(embedded_model):
    question = "What flows?"
    context = " ".join(f"word{i}" for i in range(4000))  # far beyond the window
    cut = fit_context(embedded_model, context, question, max_tokens=24)
    assert context.startswith(cut) and len(cut) < len(context)

    def prompt_tokens(text: str) -> int:
        content = READER_PROMPT.format(context=text, question=question)
        return len(embedded_model.encode_chat([{"role": "user", "content": content}]))

    assert prompt_tokens(cut) <= embedded_model.context_length - 24 < prompt_tokens(cut + " word4000 word4001")
    short = "Water flows."
    assert fit_context(embedded_model, short, question, max_tokens=24) == short
    assert fit_context(Reader(), context, question, max_tokens=24) == context  # a model that cannot count
