"""Closed-book QA on NQ-open: the chat backend answers from its own knowledge (a baseline of the LLM).

Data: `NQ-open.dev.jsonl` lines `{"question": ..., "answer": [...]}`. Metrics per method:
`em`, `f1` (SQuAD normalisation, best over the gold answers), `tokens` (mean prompt + completion),
`seconds` (mean latency), `error_rate`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prunekit.decoding import ChatModel, GenerationParams
from prunekit.eval.harness import EvalResult, read_jsonl, run_concurrently
from prunekit.eval.metrics.qa import exact_match, max_over_golds, token_f1

__all__ = ["evaluate_nq_open", "load_nq_open"]

SYSTEM = "Answer the question with a short phrase only, no explanation."


def load_nq_open(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    return read_jsonl(
        path, _nq_record, limit=limit, what="an NQ-open record", hint="pass --data PATH to NQ-open.dev.jsonl"
    )


def _nq_record(row: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(row["answer"], list):  # a lone string would be read as one answer per letter
        raise TypeError("answer must be a list of strings")
    return {"question": str(row["question"]), "answers": [str(a) for a in row["answer"]]}


def evaluate_nq_open(
    model: ChatModel, data: Path, *, limit: int | None = None, concurrency: int = 8, max_tokens: int = 32
) -> EvalResult:
    items = load_nq_open(data, limit)
    params = GenerationParams(max_tokens=max_tokens)

    def answer(item: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": item["question"]}]
        result = model.chat(messages, params)
        return {
            "prediction": result.text.strip(),
            "tokens": result.usage.total_tokens,
            "seconds": time.perf_counter() - started,
        }

    outputs = run_concurrently(answer, items, concurrency=concurrency, description="nq-open closed_book")
    records = []
    for item, out in zip(items, outputs, strict=True):
        if isinstance(out, BaseException):
            records.append({**item, "method": "closed_book", "error": str(out), "em": 0.0, "f1": 0.0})
            continue
        em = max_over_golds(exact_match, out["prediction"], item["answers"])
        f1 = max_over_golds(token_f1, out["prediction"], item["answers"])
        records.append({**item, "method": "closed_book", **out, "em": em, "f1": f1})
    ok = [r for r in records if "error" not in r]
    n = max(len(records), 1)
    metrics = {
        "closed_book.em": sum(r["em"] for r in records) / n,
        "closed_book.f1": sum(r["f1"] for r in records) / n,
        "closed_book.tokens": sum(r["tokens"] for r in ok) / max(len(ok), 1),
        "closed_book.seconds": sum(r["seconds"] for r in ok) / max(len(ok), 1),
        "closed_book.error_rate": (len(records) - len(ok)) / n,
    }
    config = {
        "data": str(data),
        "limit": limit,
        "model": model.name,
        "max_tokens": max_tokens,
        "concurrency": concurrency,
    }
    return EvalResult(task="nq", config=config, metrics=metrics, items=records)
