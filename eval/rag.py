"""`prunekit eval rag`: the RAG pipeline end to end, with and without context pruning, on held-out HotpotQA.

Every paragraph of the chosen questions (gold and distractor, deduplicated by title) becomes one chunk of ONE
collection in a temporary local Qdrant store, so retrieval has to find a question's paragraphs among all of them.
Each question then runs through the RAG graph twice, on the same `top_k` retrieved chunks:
- `pruned`: the context pruner (Provence, Chirkova et al., ICLR 2025, arXiv 2501.16214) reranks the `top_k`
  retrieved chunks and cuts the `keep` best to their relevant sentences;
- `unpruned`: the pipeline without the pruner: all `top_k` retrieved chunks, whole (nothing reranks or cuts).
The pruner was trained on HotpotQA's train split; use the test split here.

Metrics (`<method>.<metric>`, means over questions): `answer_f1`, `answer_em`, `context_tokens` (tokens of the
passages given to the LLM), `prompt_tokens` (the LLM's count of its whole prompt), `compression` (share of the
retrieved chunks' tokens removed before the LLM), `seconds` (end-to-end latency of one graph run under the pool's
load), `retrieval_recall` (share of the gold supporting titles among the retrieved chunks), `kept_recall` (among the
passages given to the LLM), `error_rate`; and `pruned.compression_vs_unpruned` (1 - pruned / unpruned context
tokens, summed over questions both answered).

`eval/` never imports `app/` (floors), so the system under test comes in as `system`, a factory called as
`system(model, store_dir, pruner=..., top_k=..., keep=..., threshold=...)` that returns a `RagBackend`
(`app.graphs.rag.RagSystem` is the real one).

The CLI passes the real system in (`prunekit eval rag --data ../shared/data/qa/hotpotqa/test.jsonl`); an example
here would have to import `app`, which `eval` never does, so tests/eval/test_rag.py runs it on a small file instead.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from prunekit.context_pruner.data import is_squad_file
from prunekit.decoding import ChatModel, InvalidRequestError, model_name
from prunekit.eval.harness import EvalResult, progress_bar, run_concurrently
from prunekit.eval.metrics.qa import exact_match, max_over_golds, token_f1
from prunekit.eval.qa import QAItem, load_qa

__all__ = ["COLLECTION", "INSTRUCTION", "METHODS", "RagBackend", "evaluate_rag"]

METHODS = ("pruned", "unpruned")
COLLECTION = "eval_corpus"
INSTRUCTION = "Answer the question from the numbered passages with a short phrase only."
INGEST_BATCH = 64


class RagBackend(Protocol):
    """What the evaluation needs from the system under test."""

    def ingest(self, collection: str, passages: Sequence[tuple[str, str]]) -> int:
        """Store `(title, text)` passages, one chunk each, with the title as their source."""
        ...

    def ask(
        self, collection: str, messages: list[dict[str, str]], params: dict[str, Any], *, pruned: bool
    ) -> Mapping[str, Any]:
        """The RAG graph's final state: `answer`, `usage`, `savings`, `retrieved`, `passages`, `citations`."""
        ...

    def close(self) -> None: ...


RagFactory = Callable[..., RagBackend]


def corpus(items: Sequence[QAItem]) -> list[tuple[str, str]]:
    """Every paragraph of `items` once, keyed by title (HotpotQA questions share Wikipedia paragraphs)."""
    seen: dict[str, str] = {}
    for item in items:
        for title, passage in zip(item.titles, item.passages, strict=True):
            if passage.strip():
                seen.setdefault(title, passage)
    return list(seen.items())


def _recall(gold: set[str], found: Sequence[str]) -> float:
    return len(gold & set(found)) / len(gold) if gold else 0.0


def evaluate_rag(
    model: ChatModel,
    data_path: Path,
    *,
    system: RagFactory,
    limit: int | None = 100,
    store_dir: Path | None = None,
    top_k: int = 8,
    keep: int = 3,
    threshold: float = 0.1,
    concurrency: int = 8,
    pruner: Any = None,
    max_tokens: int = 32,
) -> EvalResult:
    """Run `pruned` and `unpruned` RAG over one corpus of the questions' paragraphs (see the module docstring).

    `pruner` defaults to the shipped `default_pruner()`; `store_dir` (default: a temporary folder, removed after)
    holds the Qdrant store.
    """
    if not 1 <= keep <= top_k:
        raise InvalidRequestError(f"need 1 <= keep <= top_k, got keep={keep}, top_k={top_k}")
    if Path(data_path).is_file() and is_squad_file(data_path):
        # SQuAD paragraphs share their article's title, and recall here is counted by title
        raise InvalidRequestError(f"{data_path} is SQuAD: eval rag reads HotpotQA (one title per paragraph)")
    items = load_qa(Path(data_path), limit)
    if not items:
        raise InvalidRequestError(f"{data_path} holds no questions")
    if pruner is None:
        from prunekit.context_pruner import default_pruner

        pruner = default_pruner()
    passages = corpus(items)
    with tempfile.TemporaryDirectory(prefix="prunekit-rag-") as tmp:
        rag = system(
            model, Path(store_dir) if store_dir else Path(tmp), pruner=pruner, top_k=top_k, keep=keep,
            threshold=threshold,
        )  # fmt: skip
        try:
            with progress_bar() as bar:
                task = bar.add_task("ingesting", total=len(passages))
                for start in range(0, len(passages), INGEST_BATCH):
                    batch = passages[start : start + INGEST_BATCH]
                    rag.ingest(COLLECTION, batch)
                    bar.advance(task, len(batch))
            records = _answer_all(rag, items, concurrency, max_tokens)
        finally:
            rag.close()
    config = {
        "data": str(data_path),
        "limit": limit,
        "questions": len(items),
        "corpus_passages": len(passages),
        "top_k": top_k,
        "keep": keep,
        "threshold": threshold,
        "max_tokens": max_tokens,
        "concurrency": concurrency,
        "model": model_name(model),
        "instruction": INSTRUCTION,
    }
    return EvalResult(task="rag", config=config, metrics=rag_metrics(records), items=records)


def _answer_all(rag: RagBackend, items: Sequence[QAItem], concurrency: int, max_tokens: int) -> list[dict[str, Any]]:
    jobs = [(i, method) for i in range(len(items)) for method in METHODS]
    params = {"max_tokens": max_tokens}

    def run(job: tuple[int, str]) -> tuple[Mapping[str, Any], float]:
        item = items[job[0]]
        messages = [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": item.question}]
        started = time.perf_counter()
        state = rag.ask(COLLECTION, messages, params, pruned=job[1] == "pruned")
        return state, time.perf_counter() - started

    outputs = run_concurrently(run, jobs, concurrency=concurrency, description="answering")
    records = []
    for (i, method), out in zip(jobs, outputs, strict=True):
        item = items[i]
        gold = {item.titles[p] for p in item.gold_passages}
        record: dict[str, Any] = {
            "method": method,
            "index": i,
            "question": item.question,
            "answers": list(item.answers),
            "gold_titles": sorted(gold),
        }
        if isinstance(out, BaseException):
            record.update(error=f"{type(out).__name__}: {out}", prediction="", f1=0.0, em=0.0)
        else:
            state, seconds = out
            prediction = state["answer"].strip()
            savings = state["savings"]
            retrieved = [r["source"] for r in state["retrieved"]]
            kept = [p["source"] for p in state["passages"]]
            record.update(
                prediction=prediction,
                f1=max_over_golds(token_f1, prediction, item.answers),
                em=max_over_golds(exact_match, prediction, item.answers),
                context_tokens=savings["context_tokens"] - savings["context_tokens_removed"],
                retrieved_tokens=savings["context_tokens"],
                prompt_tokens=state["usage"]["prompt_tokens"],
                completion_tokens=state["usage"]["completion_tokens"],
                seconds=seconds,
                retrieved=retrieved,
                kept=kept,
                retrieval_recall=_recall(gold, retrieved),
                kept_recall=_recall(gold, kept),
                citations=len(state["citations"]),
            )
        records.append(record)
    return records


def rag_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Means per method over the questions it answered (F1/EM count a failed run as 0)."""
    metrics: dict[str, float] = {}
    for method in METHODS:
        rows = [r for r in records if r["method"] == method]
        done = [r for r in rows if not r.get("error")]
        n, m = max(len(rows), 1), max(len(done), 1)
        metrics[f"{method}.answer_f1"] = sum(r["f1"] for r in rows) / n
        metrics[f"{method}.answer_em"] = sum(r["em"] for r in rows) / n
        for key in ("context_tokens", "prompt_tokens", "seconds", "retrieval_recall", "kept_recall"):
            metrics[f"{method}.{key}"] = sum(r[key] for r in done) / m
        retrieved = sum(r["retrieved_tokens"] for r in done)
        metrics[f"{method}.compression"] = 1 - sum(r["context_tokens"] for r in done) / max(retrieved, 1)
        metrics[f"{method}.error_rate"] = (len(rows) - len(done)) / n
    both: dict[int, dict[str, int]] = {}
    for r in records:
        if not r.get("error"):
            both.setdefault(r["index"], {})[r["method"]] = r["context_tokens"]
    pairs = [v for v in both.values() if len(v) == len(METHODS)]
    unpruned = sum(v["unpruned"] for v in pairs)
    metrics["pruned.compression_vs_unpruned"] = 1 - sum(v["pruned"] for v in pairs) / max(unpruned, 1)
    return metrics
