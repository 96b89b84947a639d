"""prunekit.eval.rag: the evaluation's bookkeeping with a scripted RAG backend, then end to end on held-out HotpotQA."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from prunekit.decoding.errors import InvalidRequestError
from prunekit.eval.harness import write_results
from prunekit.eval.qa import load_qa
from prunekit.eval.rag import COLLECTION, INSTRUCTION, METHODS, corpus, evaluate_rag, rag_metrics
from tests.conftest import require_data


def hotpot(qid, question, answer, paragraphs, supporting):
    return {
        "id": qid,
        "question": question,
        "answer": answer,
        "context": {"title": [t for t, _ in paragraphs], "sentences": [s for _, s in paragraphs]},
        "supporting_facts": {"title": supporting, "sent_id": [0] * len(supporting)},
    }


ITEMS = [
    hotpot(
        "a",
        "Where does the Eiffel Tower stand?",
        "Paris",
        [("Eiffel Tower", ["The Eiffel Tower stands in Paris."]), ("Cats", ["Cats purr."])],
        ["Eiffel Tower"],
    ),
    hotpot(
        "b",
        "Which river, the Nile or another, is longest?",
        "the Nile",
        [("Nile", ["The Nile is long."]), ("Cats", ["Cats purr."]), ("Rome", ["Rome is old."])],
        ["Nile", "Cats"],
    ),
]


class FakeRag:
    """Retrieves by title words found in the question; the unpruned arm keeps the first two, the pruned arm one."""

    instances: ClassVar[list[FakeRag]] = []

    def __init__(self, model, store_dir, *, pruner, top_k, keep, threshold):
        self.model, self.store_dir, self.pruner = model, store_dir, pruner
        self.settings = {"top_k": top_k, "keep": keep, "threshold": threshold}
        self.ingested: list[tuple[str, list[tuple[str, str]]]] = []
        self.asked: list[tuple[str, list[dict], dict, bool]] = []
        self.closed = False
        FakeRag.instances.append(self)

    def ingest(self, collection, passages):
        self.ingested.append((collection, list(passages)))
        return len(passages)

    def ask(self, collection, messages, params, *, pruned):
        self.asked.append((collection, messages, params, pruned))
        question = messages[-1]["content"]
        if "Rome" in question:
            raise RuntimeError("backend down")
        titles = [t for _, batch in self.ingested for t, _ in batch]
        hits = sorted(titles, key=lambda t: t.split()[0] not in question)  # titles named in the question first
        kept = hits[:1] if pruned else hits[:2]
        answer = "Paris" if "Eiffel" in question else "Nile river"
        return {
            "answer": f" {answer} ",
            "usage": {"prompt_tokens": 50 if pruned else 80, "completion_tokens": 2},
            "savings": {
                "context_tokens": 100,
                "context_tokens_removed": 90 if pruned else 60,
                "passages_retrieved": len(hits),
                "passages_kept": len(kept),
            },
            "retrieved": [{"source": t} for t in hits],
            "passages": [{"source": t} for t in kept],
            "citations": [{"source": t, "chunk": 0, "text": "x", "score": 1.0} for t in kept],
        }

    def close(self):
        self.closed = True


@pytest.fixture()
def data(tmp_path):
    path = tmp_path / "hotpot.jsonl"
    path.write_text("\n".join(json.dumps(it) for it in ITEMS) + "\n")
    return path


def test_corpus_has_each_title_once(data):
    assert [t for t, _ in corpus(load_qa(data))] == ["Eiffel Tower", "Cats", "Nile", "Rome"]


def test_both_arms_run_over_one_collection_and_are_scored(data):
    FakeRag.instances.clear()
    pruner = object()
    result = evaluate_rag("model", data, system=FakeRag, top_k=4, keep=2, threshold=0.2, pruner=pruner, concurrency=2)
    rag = FakeRag.instances[-1]
    assert rag.pruner is pruner and rag.settings == {"top_k": 4, "keep": 2, "threshold": 0.2} and rag.closed
    assert [c for c, _ in rag.ingested] == [COLLECTION] and len(rag.ingested[0][1]) == 4
    assert sorted((m[-1]["content"], pruned) for _, m, _, pruned in rag.asked) == sorted(
        (it["question"], p) for it in ITEMS for p in (True, False)
    )
    assert all(m[0] == {"role": "system", "content": INSTRUCTION} for _, m, _, _ in rag.asked)
    assert all(params == {"max_tokens": 32} for _, _, params, _ in rag.asked)
    m = result.metrics
    assert m["pruned.answer_em"] == 0.5 and m["pruned.answer_f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["pruned.context_tokens"] == 10 and m["unpruned.context_tokens"] == 40
    assert m["pruned.compression"] == pytest.approx(0.9) and m["unpruned.compression"] == pytest.approx(0.6)
    assert m["pruned.compression_vs_unpruned"] == pytest.approx(0.75)
    assert m["pruned.prompt_tokens"] == 50 and m["unpruned.prompt_tokens"] == 80
    # b: Nile named, Cats not: all 4 retrieved (both gold); pruned keeps Nile alone (1 of 2 gold)
    assert m["unpruned.retrieval_recall"] == 1.0
    assert m["pruned.kept_recall"] == pytest.approx((1 + 0.5) / 2)
    assert m["unpruned.kept_recall"] == pytest.approx((1 + 0.5) / 2)  # b keeps Nile and Eiffel Tower
    assert m["pruned.error_rate"] == 0 and m["pruned.seconds"] >= 0
    assert result.task == "rag" and result.config["corpus_passages"] == 4 and result.config["questions"] == 2


def test_a_failing_run_is_recorded_and_scores_zero(tmp_path):
    path = tmp_path / "h.jsonl"
    rome = hotpot("c", "How old is Rome?", "old", [("Rome", ["Rome is old."])], ["Rome"])
    path.write_text("\n".join(json.dumps(it) for it in [ITEMS[0], rome]))
    result = evaluate_rag("model", path, system=FakeRag, pruner=object(), concurrency=1)
    failed = [r for r in result.items if r.get("error")]
    assert len(failed) == 2 and all("backend down" in r["error"] for r in failed)
    assert result.metrics["pruned.error_rate"] == 0.5 and result.metrics["pruned.answer_em"] == 0.5
    assert result.metrics["pruned.context_tokens"] == 10  # means over the runs that finished


def test_rag_metrics_compare_only_questions_both_arms_answered():
    def row(method, index, tokens, error=None):
        base = {"method": method, "index": index, "question": "q", "f1": 1.0, "em": 1.0}
        if error:
            return {**base, "error": error, "f1": 0.0, "em": 0.0}
        return {**base, "context_tokens": tokens, "retrieved_tokens": 100, "prompt_tokens": 0, "seconds": 1.0,
                "retrieval_recall": 1.0, "kept_recall": 1.0}  # fmt: skip

    rows = [row("pruned", 0, 20), row("unpruned", 0, 40), row("pruned", 1, 5), row("unpruned", 1, 0, error="x")]
    m = rag_metrics(rows)
    assert m["pruned.compression_vs_unpruned"] == pytest.approx(0.5)
    assert m["unpruned.error_rate"] == 0.5 and m["unpruned.answer_f1"] == 0.5
    assert {k.partition(".")[0] for k in m} == set(METHODS)


def test_bad_settings_and_paths_fail_clearly(tmp_path):
    with pytest.raises(InvalidRequestError, match="keep <= top_k"):
        evaluate_rag("model", tmp_path / "x.jsonl", system=FakeRag, top_k=2, keep=3)
    with pytest.raises(InvalidRequestError, match="does not exist"):
        evaluate_rag("model", tmp_path / "x.jsonl", system=FakeRag)
    squad = tmp_path / "squad.json"
    squad.write_text('{"version": "1.1", "data": [{"title": "T", "paragraphs": []}]}')
    with pytest.raises(InvalidRequestError, match="is SQuAD"):
        evaluate_rag("model", squad, system=FakeRag)


def test_end_to_end_on_held_out_hotpotqa(embedded_model, tmp_path):
    from prunekit.app.graphs.rag import RagSystem

    data = require_data("qa/hotpotqa/test.jsonl")
    result = evaluate_rag(embedded_model, data, system=RagSystem, limit=3, concurrency=4)
    m = result.metrics
    for method in METHODS:
        for key in ("answer_f1", "answer_em", "retrieval_recall", "kept_recall", "compression"):
            assert 0.0 <= m[f"{method}.{key}"] <= 1.0, key
        assert m[f"{method}.error_rate"] == 0.0
        assert m[f"{method}.context_tokens"] > 0 and m[f"{method}.seconds"] > 0
        assert m[f"{method}.prompt_tokens"] > m[f"{method}.context_tokens"] * 0.5
    assert m["pruned.retrieval_recall"] == m["unpruned.retrieval_recall"] > 0  # one retriever for both arms
    assert m["pruned.compression"] > 0.5  # 8 chunks retrieved, at most 3 reach the LLM, cut to sentences
    assert result.config["corpus_passages"] >= 20 and len(result.items) == 6
    assert all(r["citations"] > 0 for r in result.items)
    write_results(result, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "results.json").read_text())["task"] == "rag"
