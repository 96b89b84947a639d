"""The RAG graph: retrieve -> prune -> answer -> cite, over a Qdrant collection.

Retrieval takes the `top_k` chunks nearest to the last user message. The prune step runs the context pruner
(Provence, Chirkova et al., ICLR 2025, arXiv 2501.16214): one encoder pass per chunk scores it for reranking and
keeps the sentences that help answer; the `keep` best-ranked chunks that keep any text go to the LLM, cut to those
sentences. Without a pruner the graph is the no-pruning baseline: the `keep` nearest chunks, whole. The LLM sees
a short prompt (an instruction, the numbered passages, the question) and streams its answer; `cite` lists the
sentences it was given, with where they came from and how they ranked.

State contract (what the service router sends and reads):
- input: `{"messages": [openai-style dicts], "params": {GenerationParams fields}, "collection": str}`;
- custom stream (`stream_mode="custom"`): `{"progress": {"stage": "retrieve" | "prune" | "answer", ...}}` per stage,
  then `{"delta": text}` per answer token;
- final state: `messages` (the answer appended), `answer`, `finish_reason`, `usage` (LLM tokens), `savings`
  (`context_tokens` of the retrieved chunks, `context_tokens_removed`, `passages_retrieved`, `passages_kept`),
  `citations` (`source`, `chunk`, `text`, `score`), plus `retrieved` and `passages` (what each stage chose) and
  `marked`: every retrieved passage, best-ranked first, with its sentences marked kept (the LLM read them) or dropped
  (`app.graphs.details.marked_passage`: what the chat page draws).

Token counts in `savings` use the retrieval encoder's tokenizer (MiniLM WordPiece, the pruner's own vocabulary), so
both arms are counted alike; the LLM's own count of its whole prompt is `usage.prompt_tokens`.

>>> import tempfile
>>> from prunekit.context_pruner import default_pruner
>>> from prunekit.decoding import ChatChunk, Usage
>>> from prunekit.decoding.backends.embeddings import load_embedder
>>> class Eiffel:  # a scripted stand-in for any ChatModel: load_embedded(), OpenAIModel(...)
...     name = "eiffel"
...     def stream(self, messages, params=None):
...         yield ChatChunk("In 1889.", "stop", Usage(prompt_tokens=60, completion_tokens=4))
>>> tmp = tempfile.TemporaryDirectory()
>>> store = VectorStore(load_embedder(), path=Path(tmp.name))
>>> store.add("notes", [Chunk("The Eiffel Tower was completed in 1889.", "eiffel.txt", 0, "Eiffel Tower"),
...                     Chunk("Bananas are rich in potassium.", "bananas.txt", 0, "Bananas")])
2
>>> graph = build_rag_graph(Eiffel(), store, default_pruner(), threshold=0.5)  # 0.5: aggressive pruning
>>> state = graph.invoke({"messages": [{"role": "user", "content": "When was the Eiffel Tower completed?"}],
...                       "params": {"max_tokens": 32}, "collection": "notes"})
>>> state["answer"], state["savings"]["passages_retrieved"], state["savings"]["passages_kept"]
('In 1889.', 2, 1)
>>> state["citations"][0]["source"], state["citations"][0]["text"]
('eiffel.txt', 'The Eiffel Tower was completed in 1889.')
>>> store.close()
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph

from prunekit.app.graphs.common import last_user_text, stream_answer, usage_state
from prunekit.app.graphs.details import marked_passage
from prunekit.app.graphs.params import generation_params
from prunekit.app.rag.documents import Chunk
from prunekit.app.rag.store import VectorStore
from prunekit.context_pruner import split_sentences
from prunekit.decoding import ChatModel, InvalidRequestError

__all__ = [
    "DEFAULT_INSTRUCTION",
    "RagNodes",
    "RagState",
    "RagSystem",
    "UnknownCollectionError",
    "build_prompt",
    "build_rag_graph",
]

DEFAULT_INSTRUCTION = (
    "Answer the question using only the numbered passages. "
    "If they do not contain the answer, say that you do not know. Be brief."
)


class UnknownCollectionError(InvalidRequestError):
    """The collection to search does not exist or holds no documents (maps to HTTP 400)."""


class RagState(TypedDict, total=False):
    messages: Annotated[list[dict[str, str]], operator.add]  # history; `answer` appends
    params: dict[str, Any]  # app.graphs.params' plain data, so a checkpointer can store it
    collection: str
    retrieved: list[dict[str, Any]]  # retrieve: source, chunk, title, text, score (cosine), best first
    passages: list[dict[str, Any]]  # prune: the kept passages, with their kept sentences, in prompt order
    marked: list[dict[str, Any]]  # prune: every retrieved passage, its sentences marked kept or dropped
    answer: str
    finish_reason: str
    usage: dict[str, int]
    savings: dict[str, int]
    citations: list[dict[str, Any]]


def build_rag_graph(
    model: ChatModel,
    store: VectorStore,
    pruner: Any = None,
    *,
    top_k: int = 8,
    keep: int = 3,
    threshold: float = 0.1,
    checkpointer: Any = None,
) -> Any:
    """Compile the RAG graph over `store` (with a checkpointer, invoke it with a `thread_id`).

    `pruner` is a `context_pruner.ContextPruner` (e.g. `default_pruner()`); None gives the no-pruning baseline.
    """
    nodes = RagNodes(model, store, pruner, top_k=top_k, keep=keep, threshold=threshold)
    graph = StateGraph(RagState)
    graph.add_node("retrieve", nodes.retrieve)
    graph.add_node("prune", nodes.prune)
    graph.add_node("answer", nodes.answer)
    graph.add_node("cite", cite)
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "prune")
    graph.add_edge("prune", "answer")
    graph.add_edge("answer", "cite")
    graph.add_edge("cite", END)
    return graph.compile(checkpointer=checkpointer)


@dataclass(frozen=True, eq=False)
class RagNodes:
    """The RAG graph's steps, over one model, store and pruner (None: the no-pruning baseline)."""

    model: ChatModel
    store: VectorStore
    pruner: Any = None
    top_k: int = 8
    keep: int = 3
    threshold: float = 0.1

    def __post_init__(self) -> None:
        if not 1 <= self.keep <= self.top_k:
            raise InvalidRequestError(f"need 1 <= keep <= top_k, got keep={self.keep}, top_k={self.top_k}")
        if not 0.0 <= self.threshold <= 1.0:
            raise InvalidRequestError(f"threshold must be in [0, 1], got {self.threshold}")

    def retrieve(self, state: RagState) -> RagState:
        """The `top_k` chunks of the collection nearest to the question, best first."""
        collection = state.get("collection") or ""
        question = last_user_text(state.get("messages", [])).strip()
        known = self.store.collections()
        if collection not in known:
            raise UnknownCollectionError(
                f"collection {collection!r} does not exist; ingest documents into it first "
                f"(`prunekit ingest DIR --collection NAME`); existing: {', '.join(known) or 'none'}"
            )
        hits = self.store.search(collection, question, k=self.top_k)
        if not hits:
            raise UnknownCollectionError(f"collection {collection!r} is empty; ingest documents into it first")
        retrieved = [
            {"source": h.chunk.source, "chunk": h.chunk.index, "title": h.chunk.title, "text": h.chunk.text,
             "score": h.score}
            for h in hits
        ]  # fmt: skip
        get_stream_writer()({"progress": {"stage": "retrieve", "collection": collection, "passages": len(hits)}})
        return {"retrieved": retrieved}

    def prune(self, state: RagState) -> RagState:
        """The `keep` passages the LLM reads, and what leaving out the rest saved."""
        retrieved = state["retrieved"]
        if self.pruner is None:  # the baseline: nearest first, whole chunks
            passages = [{**r, "sentences": _sentences(r["text"])} for r in retrieved[: self.keep]]
            marked = [_marked_whole(r, used=n < self.keep) for n, r in enumerate(retrieved)]
        else:
            passages, marked = self._pruned_passages(last_user_text(state["messages"]).strip(), retrieved)
        before = sum(self._count(r["text"]) for r in retrieved)
        after = sum(self._count(p["text"]) for p in passages)
        savings = {
            "context_tokens": before,
            "context_tokens_removed": before - after,
            "passages_retrieved": len(retrieved),
            "passages_kept": len(passages),
        }
        get_stream_writer()({"progress": {"stage": "prune", "pruned": self.pruner is not None, **savings}})
        return {"passages": passages, "marked": marked, "savings": savings}

    def answer(self, state: RagState) -> RagState:
        """Stream the LLM's answer to the question over the kept passages."""
        messages = state["messages"]
        prompt = build_prompt(_instruction(messages), state["passages"], last_user_text(messages).strip())
        get_stream_writer()({"progress": {"stage": "answer", "passages": len(state["passages"])}})
        result = stream_answer(self.model, prompt, generation_params(state.get("params")))
        return {
            "messages": [{"role": "assistant", "content": result.text}],
            "answer": result.text,
            "finish_reason": result.finish_reason,
            "usage": usage_state(result.usage),
        }

    def _pruned_passages(
        self, question: str, retrieved: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The pruner's `keep` best-reranked chunks that keep any sentence, cut to those sentences; and every
        retrieved chunk, best-reranked first, its sentences marked kept or dropped."""
        results = self.pruner.prune(
            question, [r["text"] for r in retrieved], titles=[r["title"] or None for r in retrieved],
            threshold=self.threshold, reorder=True,
        )  # fmt: skip
        passages: list[dict[str, Any]] = []
        marked: list[dict[str, Any]] = []
        for res in results:  # best rerank score first; a chunk with no kept sentence has nothing to say
            r = retrieved[res.index]
            used = len(passages) < self.keep and bool(res.kept_sentences)
            if used:
                sentences = [r["text"][a:b] for a, b in res.kept_spans]
                passages.append({**r, "text": res.pruned_text, "score": res.rerank_score, "sentences": sentences})
            marked.append(
                marked_passage(r, res.sentence_spans, set(res.kept_sentences), used=used, score=res.rerank_score,
                               probs=res.sentence_probs)
            )  # fmt: skip
        return passages, marked

    def _count(self, text: str) -> int:
        """Tokens of `text` for the tokenizer of the retrieval encoder (the pruner's vocabulary: both arms alike)."""
        tokenizer = self.store.embedder.model.tokenizer
        # verbose=False: a chunk longer than the encoder's window is fine here, we only count
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) if text else 0


def cite(state: RagState) -> RagState:
    """Every sentence the LLM was given, with where it came from and how its passage ranked."""
    citations = [
        {"source": p["source"], "chunk": p["chunk"], "text": sentence, "score": float(p["score"])}
        for p in state["passages"]
        for sentence in p["sentences"]
    ]
    return {"citations": citations}


def _instruction(messages: Sequence[Mapping[str, Any]]) -> str:
    """A system message of the conversation replaces the default instruction (e.g. "answer with a short phrase")."""
    for message in reversed(messages):
        if message.get("role") == "system" and isinstance(message.get("content"), str) and message["content"].strip():
            return message["content"].strip()
    return DEFAULT_INSTRUCTION


def build_prompt(instruction: str, passages: Sequence[Mapping[str, Any]], question: str) -> list[dict[str, str]]:
    """System instruction + numbered passages + question: short, since a 135M model with 8k context reads it.

    >>> build_prompt("Be brief.", [{"title": "Paris", "text": "Paris is in France."}], "Where is Paris?")[1]["content"]
    'Passages:\\n[1] Paris: Paris is in France.\\n\\nQuestion: Where is Paris?'
    """
    lines = [f"[{n}] {p['title']}: {p['text']}" if p.get("title") else f"[{n}] {p['text']}"
             for n, p in enumerate(passages, 1)]  # fmt: skip
    context = "\n".join(lines) if lines else "(no passage was found)"
    return [
        {"role": "system", "content": instruction},
        {"role": "user", "content": f"Passages:\n{context}\n\nQuestion: {question}"},
    ]


def _sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


def _marked_whole(retrieved: Mapping[str, Any], *, used: bool) -> dict[str, Any]:
    """A retrieved chunk of the no-pruning baseline: every sentence read when the chunk was sent, none otherwise."""
    spans = split_sentences(retrieved["text"])
    return marked_passage(retrieved, spans, range(len(spans)), used=used, score=retrieved["score"])


class RagSystem:
    """A local vector store with the pruned and the unpruned RAG graph over it: the system `eval.rag` measures.

    `eval/` may not import `app/` (floors), so the evaluation receives this class as its `system` factory.

    >>> import tempfile
    >>> from prunekit.context_pruner import default_pruner
    >>> from prunekit.decoding import ChatChunk, Usage
    >>> class Paris:  # a scripted stand-in for any ChatModel: load_embedded(), OpenAIModel(...)
    ...     name = "paris"
    ...     def stream(self, messages, params=None):
    ...         yield ChatChunk("Paris.", "stop", Usage(prompt_tokens=40, completion_tokens=2))
    >>> tmp = tempfile.TemporaryDirectory()
    >>> system = RagSystem(Paris(), Path(tmp.name), pruner=default_pruner(), threshold=0.5)
    >>> passages = [("France", "Paris is the capital of France."), ("Bananas", "Bananas are rich in potassium.")]
    >>> system.ingest("corpus", passages)  # (title, text) pairs, one chunk each
    2
    >>> question = [{"role": "user", "content": "What is the capital of France?"}]
    >>> pruned, whole = (system.ask("corpus", question, {}, pruned=p) for p in (True, False))
    >>> pruned["answer"], len(pruned["passages"]), len(whole["passages"])  # the pruner dropped the off-topic chunk
    ('Paris.', 1, 2)
    >>> system.close()
    """

    def __init__(
        self, model: ChatModel, store_dir: Path, *, pruner: Any, top_k: int = 8, keep: int = 3, threshold: float = 0.1
    ) -> None:
        from prunekit.decoding.backends.embeddings import load_embedder

        self.store = VectorStore(load_embedder(), path=Path(store_dir))
        self.graphs = {
            True: build_rag_graph(model, self.store, pruner, top_k=top_k, keep=keep, threshold=threshold),
            # without the pruner nothing reranks or cuts: the LLM reads every retrieved chunk
            False: build_rag_graph(model, self.store, None, top_k=top_k, keep=top_k, threshold=threshold),
        }

    def ingest(self, collection: str, passages: Sequence[tuple[str, str]]) -> int:
        """Store `(title, text)` passages, one chunk each, with the title as their source."""
        return self.store.add(
            collection, [Chunk(text=text, source=title, index=0, title=title) for title, text in passages]
        )

    def ask(
        self, collection: str, messages: list[dict[str, str]], params: dict[str, Any], *, pruned: bool
    ) -> dict[str, Any]:
        """The final state of one RAG run (see the module docstring for its keys)."""
        return self.graphs[pruned].invoke({"messages": messages, "params": params, "collection": collection})

    def close(self) -> None:
        self.store.close()
