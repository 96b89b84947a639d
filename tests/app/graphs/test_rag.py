"""The RAG graph over a real local Qdrant store: scripted fake LLMs for the logic, the embedded model end to end."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from prunekit.app.graphs.rag import (
    DEFAULT_INSTRUCTION,
    RagSystem,
    UnknownCollectionError,
    build_prompt,
    build_rag_graph,
)
from prunekit.app.rag.documents import Chunk
from prunekit.app.rag.store import VectorStore
from prunekit.context_pruner import PrunedContext, default_pruner, split_sentences
from prunekit.decoding.backends.embeddings import load_embedder
from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.types import ChatChunk, ChatResult, GenerationParams, Usage

DOCS = {
    "eiffel.txt": (
        "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
        "It is named after the engineer Gustave Eiffel, whose company designed and built the tower. "
        "Construction was completed in 1889 as the entrance to the World Fair. "
        "The stock market fell sharply on Monday after weak earnings reports from technology firms."
    ),
    "photosynthesis.txt": "Photosynthesis turns light into sugar. It happens in chloroplasts.",
    "sql.txt": "SQL joins combine rows of two tables. An inner join keeps matching rows.",
    "nile.txt": "The Nile is a long river in Africa. It flows into the Mediterranean Sea.",
}
QUESTION = "When was the Eiffel Tower completed?"


class Scripted:
    """Streams a fixed answer word by word and records the prompts and params it was given."""

    name = "scripted"

    def __init__(self, answer: str = "It was completed in 1889.") -> None:
        self.answer = answer
        self.prompts: list[list[dict[str, str]]] = []
        self.params: list[GenerationParams] = []

    def stream(self, messages, params=None):
        self.prompts.append(list(messages))
        self.params.append(params)
        words = self.answer.split(" ")
        for i, word in enumerate(words):
            yield ChatChunk(word if i == 0 else " " + word)
        yield ChatChunk("", "stop", Usage(prompt_tokens=42, completion_tokens=len(words)))

    def chat(self, messages, params=None):
        return ChatResult(self.answer, "stop", Usage(42, 1), self.name)


class FirstSentencePruner:
    """Keeps each context's first sentence, ranks contexts in reverse input order, empties the best-ranked one."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def prune(self, question, contexts, titles=None, threshold=0.1, reorder=False, **_):
        self.calls.append({"question": question, "contexts": list(contexts), "titles": titles, "threshold": threshold})
        out = []
        n = len(contexts)
        for i, text in enumerate(contexts):
            spans = tuple(split_sentences(text))
            rank = n - 1 - i
            kept = () if rank == 0 else (0,)
            out.append(
                PrunedContext(
                    pruned_text=text[spans[0][0] : spans[0][1]] if kept else "",
                    kept_sentences=kept,
                    sentence_spans=spans,
                    sentence_probs=tuple(0.5 for _ in spans),
                    rerank_score=float(i),
                    tokens_before=0,
                    tokens_after=0,
                    index=i,
                    rank=rank,
                )
            )
        return sorted(out, key=lambda r: r.rank) if reorder else out


@pytest.fixture()
def store(tmp_path):
    s = VectorStore(load_embedder(), path=tmp_path / "qdrant")
    s.add("docs", [Chunk(text=t, source=name, index=0, title=name.split(".")[0]) for name, t in DOCS.items()])
    yield s
    s.close()


def count(store: VectorStore, text: str) -> int:
    return len(store.embedder.model.tokenizer(text, add_special_tokens=False)["input_ids"])


def ask(question: str = QUESTION, **extra) -> dict:
    return {"messages": [{"role": "user", "content": question}], "params": {}, "collection": "docs", **extra}


def test_without_pruner_the_nearest_chunks_go_whole_and_savings_add_up(store):
    model = Scripted()
    state = build_rag_graph(model, store, None, top_k=4, keep=2).invoke(ask())
    retrieved = store.search("docs", QUESTION, k=4)
    assert [r["source"] for r in state["retrieved"]] == [h.chunk.source for h in retrieved]
    assert state["retrieved"][0]["source"] == "eiffel.txt"
    kept = retrieved[:2]
    assert [p["text"] for p in state["passages"]] == [h.chunk.text for h in kept]
    before = sum(count(store, h.chunk.text) for h in retrieved)
    assert state["savings"] == {
        "context_tokens": before,
        "context_tokens_removed": before - sum(count(store, h.chunk.text) for h in kept),
        "passages_retrieved": 4,
        "passages_kept": 2,
    }
    # citations: every sentence of the kept chunks, scored by retrieval similarity
    cited = [(h, h.chunk.text[a:b]) for h in kept for a, b in split_sentences(h.chunk.text)]
    assert state["citations"] == [
        {"source": h.chunk.source, "chunk": 0, "text": text, "score": pytest.approx(h.score)} for h, text in cited
    ]
    assert len(cited) > 4 and cited[2][1] == "Construction was completed in 1889 as the entrance to the World Fair."
    assert state["answer"] == "It was completed in 1889."
    assert state["messages"][-1] == {"role": "assistant", "content": state["answer"]}
    assert state["usage"] == {"prompt_tokens": 42, "completion_tokens": 5}
    assert state["finish_reason"] == "stop"
    system, user = model.prompts[0]
    assert system == {"role": "system", "content": DEFAULT_INSTRUCTION}
    assert user["content"].startswith("Passages:\n[1] eiffel: The Eiffel Tower is a wrought-iron")
    assert "\n[2] " in user["content"] and "\n[3] " not in user["content"]
    assert user["content"].endswith(f"Question: {QUESTION}")


def test_pruner_reranks_keeps_pruned_text_and_skips_emptied_passages(store):
    pruner = FirstSentencePruner()
    state = build_rag_graph(Scripted(), store, pruner, top_k=4, keep=2, threshold=0.3).invoke(ask())
    call = pruner.calls[0]
    assert call["question"] == QUESTION and call["threshold"] == 0.3 and len(call["contexts"]) == 4
    assert call["titles"] == [r["title"] for r in state["retrieved"]]
    # rank 0 (the last retrieved) kept nothing, so ranks 1 and 2 (retrieved #3 and #2) are the passages
    texts = [r["text"] for r in state["retrieved"]]
    firsts = [t[slice(*split_sentences(t)[0])] for t in texts]
    assert [p["text"] for p in state["passages"]] == [firsts[2], firsts[1]]
    assert [p["score"] for p in state["passages"]] == [2.0, 1.0]
    before = sum(count(store, t) for t in texts)
    assert state["savings"]["context_tokens"] == before
    assert state["savings"]["context_tokens_removed"] == before - count(store, firsts[2]) - count(store, firsts[1])
    assert state["savings"]["passages_kept"] == 2
    sources = [r["source"] for r in state["retrieved"]]
    assert state["citations"] == [
        {"source": sources[2], "chunk": 0, "text": firsts[2], "score": 2.0},
        {"source": sources[1], "chunk": 0, "text": firsts[1], "score": 1.0},
    ]


def test_real_pruner_cuts_an_irrelevant_sentence_and_ranks_the_answer_first(store):
    pruned = build_rag_graph(Scripted(), store, default_pruner(), top_k=4, keep=2, threshold=0.3).invoke(ask())
    whole = build_rag_graph(Scripted(), store, None, top_k=4, keep=2).invoke(ask())
    top = pruned["passages"][0]
    assert top["source"] == "eiffel.txt" and "1889" in top["text"] and "stock market" not in top["text"]
    assert not any("stock market" in c["text"] for c in pruned["citations"])
    assert pruned["savings"]["context_tokens"] == whole["savings"]["context_tokens"]
    assert pruned["savings"]["context_tokens_removed"] > whole["savings"]["context_tokens_removed"]


def test_stream_reports_stages_then_answer_tokens(store):
    graph = build_rag_graph(Scripted(), store, FirstSentencePruner(), top_k=3, keep=2)
    events = list(graph.stream(ask(), stream_mode="custom"))
    stages = [e["progress"]["stage"] for e in events if "progress" in e]
    assert stages == ["retrieve", "prune", "answer"]
    assert events[0]["progress"]["passages"] == 3
    assert events[1]["progress"]["passages_kept"] == 2 and events[1]["progress"]["pruned"] is True
    deltas = [e["delta"] for e in events if "delta" in e]
    assert "".join(deltas) == "It was completed in 1889." and len(deltas) == 5
    assert events.index(next(e for e in events if "delta" in e)) == 3  # tokens only after the three stages


def test_params_and_a_system_message_reach_the_model(store):
    model = Scripted()
    state = {
        "messages": [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": QUESTION}],
        "params": {"max_tokens": 7, "format": "regex:[0-9]+", "format_method": "hard_mask", "stop": ["\n"]},
        "collection": "docs",
    }
    build_rag_graph(model, store, None, top_k=2, keep=1).invoke(state)
    assert model.params[0] == GenerationParams(
        max_tokens=7, format="regex:[0-9]+", format_method="hard_mask", stop=("\n",)
    )
    assert model.prompts[0][0] == {"role": "system", "content": "Answer with one word."}


def test_unknown_and_empty_collections_raise_a_specific_error(store):
    graph = build_rag_graph(Scripted(), store, None)
    with pytest.raises(UnknownCollectionError, match=r"'nope' does not exist.*existing: docs"):
        graph.invoke(ask(collection="nope"))
    store.add("empty", [])
    with pytest.raises(UnknownCollectionError, match="'empty' is empty"):
        graph.invoke(ask(collection="empty"))
    assert issubclass(UnknownCollectionError, InvalidRequestError)


def test_bad_requests_raise_invalid_request(store):
    graph = build_rag_graph(Scripted(), store, None)
    with pytest.raises(InvalidRequestError, match="last user message"):
        graph.invoke(ask(question="  "))
    with pytest.raises(InvalidRequestError, match="unknown generation parameter"):
        graph.invoke(ask(params={"max_tokenz": 3}))
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        graph.invoke(ask(params={"max_tokens": 0}))
    with pytest.raises(InvalidRequestError, match="keep <= top_k"):
        build_rag_graph(Scripted(), store, None, top_k=2, keep=3)


def test_a_thread_keeps_the_conversation(store):
    graph = build_rag_graph(Scripted(), store, None, top_k=2, keep=1, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    graph.invoke(ask(), config)
    state = graph.invoke({"messages": [{"role": "user", "content": "Where is the Nile?"}]}, config)
    assert [m["role"] for m in state["messages"]] == ["user", "assistant", "user", "assistant"]
    assert state["passages"][0]["source"] == "nile.txt"  # the new question drives retrieval


def test_build_prompt_without_passages_says_so():
    prompt = build_prompt("Be brief.", [], "Who?")
    assert prompt[1]["content"] == "Passages:\n(no passage was found)\n\nQuestion: Who?"


def test_rag_system_ingests_title_sourced_passages_and_runs_both_arms(tmp_path):
    system = RagSystem(Scripted(), tmp_path / "q", pruner=FirstSentencePruner(), top_k=2, keep=1)
    try:
        assert system.ingest("c", [("Paris", "Paris is in France. It is big."), ("Nile", "The Nile is long.")]) == 2
        messages = [{"role": "user", "content": "Where is Paris?"}]
        whole = system.ask("c", messages, {}, pruned=False)
        pruned = system.ask("c", messages, {}, pruned=True)
        assert whole["passages"][0]["source"] == "Paris" and whole["passages"][0]["title"] == "Paris"
        assert pruned["savings"]["passages_retrieved"] == 2 and pruned["savings"]["passages_kept"] == 1
        assert len(whole["passages"]) == 2  # without the pruner the LLM reads every retrieved chunk
    finally:
        system.close()


def test_embedded_model_answers_from_the_kept_passages(embedded_model, store):
    graph = build_rag_graph(embedded_model, store, default_pruner(), top_k=4, keep=2)
    events = list(graph.stream(ask(params={"max_tokens": 32}), stream_mode=["custom", "values"]))
    final = [payload for mode, payload in events if mode == "values"][-1]
    deltas = "".join(p["delta"] for mode, p in events if mode == "custom" and "delta" in p)
    assert final["answer"] == deltas and "1889" in final["answer"]
    assert final["usage"]["prompt_tokens"] > 20 and final["usage"]["completion_tokens"] > 0
    assert final["citations"][0]["source"] == "eiffel.txt"
    assert 0 < final["savings"]["context_tokens_removed"] < final["savings"]["context_tokens"]
