"""eval.qa on small hand-written HotpotQA and SQuAD files, with the shipped context pruner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from decoding.errors import InvalidRequestError
from decoding.types import ChatChunk, ChatResult, Usage
from eval.harness import write_results
from eval.qa import evaluate_qa, load_qa, plot_sweep

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
                            "answers": [{"text": "1889", "answer_start": 22}],
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
    from context_pruner import default_pruner

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
