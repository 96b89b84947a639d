"""`prunekit eval chat`: the default chat path on short general-knowledge questions, with its loop guard on and off.

Why: greedy decoding of a 135M model falls into loops (`la France, la France, ...` until max_tokens). The
repetition penalty (`decoding.backends.penalties`) that chat turns on by default must break them without costing
answers, so both are measured on the same questions in one run.

Data: `eval/questions/general_questions.jsonl`, written for this project (no dataset or evaluation split), one
`{"question": ..., "answers": [acceptable strings]}` a line. Each question is asked as `prunekit chat` asks it:
one user message, no system prompt, greedy, `max_tokens` 256. Methods: `guard` (the repetition penalty chat
uses) and `no_guard` (none). Metrics per method:
- `correct`: share of replies in which an acceptable answer appears as a whole word (case-insensitive);
- `repeated_4gram`: share of replies in which some word 4-gram occurs 3 or more times (a loop);
- `answer_tokens`: mean completion tokens; `length_stops`: share of replies cut at max_tokens;
- `error_rate`: share of requests that failed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prunekit.decoding import ChatModel, GenerationParams, InvalidRequestError
from prunekit.eval.harness import EvalResult, read_jsonl, run_concurrently

__all__ = [
    "DEFAULT_QUESTIONS",
    "METHODS",
    "evaluate_chat",
    "has_answer",
    "load_questions",
    "repeated_ngram",
]

DEFAULT_QUESTIONS = Path(__file__).parent / "questions" / "general_questions.jsonl"
METHODS = ("guard", "no_guard")
_WORD = re.compile(r"\w+")


def load_questions(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The questions in a `{"question", "answers"}` JSON-lines file (the first `limit`)."""
    hint = "pass --data PATH to a questions .jsonl file"
    return read_jsonl(path, _question_record, limit=limit, what="a question record", hint=hint)


def _question_record(row: dict[str, Any]) -> dict[str, Any]:
    answers = row["answers"]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a for a in answers):
        raise TypeError("answers must be a non-empty list of non-empty strings")
    return {"question": str(row["question"]), "answers": answers}


def has_answer(reply: str, answers: Sequence[str]) -> bool:
    """Whether one of `answers` appears in `reply` as a whole word or phrase, ignoring case (so "12" is not found in
    "120", nor "Na" in "national").

    >>> has_answer("The capital of France is Paris.", ["Paris"]), has_answer("It has 120 pages", ["12"])
    (True, False)
    """
    return any(re.search(rf"(?<!\w){re.escape(a)}(?!\w)", reply, re.IGNORECASE) for a in answers)


def repeated_ngram(text: str, n: int = 4, times: int = 3) -> bool:
    """Whether some word `n`-gram occurs `times` or more times in `text`: the mark of a loop.

    >>> repeated_ngram("la France, la France, la France, la France"), repeated_ngram("Paris is the capital.")
    (True, False)
    """
    words = _WORD.findall(text.lower())
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return any(count >= times for count in grams.values())


def evaluate_chat(
    model: ChatModel,
    data: Path = DEFAULT_QUESTIONS,
    *,
    repetition_penalty: float,
    limit: int | None = None,
    max_tokens: int = 256,
    concurrency: int = 8,
    methods: Sequence[str] = METHODS,
) -> EvalResult:
    """Ask every question with the guard (`repetition_penalty`, what chat uses) and without it.

    The CLI passes the service's default (`PRUNEKIT_REPETITION_PENALTY`): `eval` does not read `app`'s settings.
    """
    unknown = set(methods) - set(METHODS)
    if unknown or not methods:
        raise InvalidRequestError(f"methods must be among {', '.join(METHODS)}, got {list(methods)}")
    questions = load_questions(data, limit)
    params = {
        "guard": GenerationParams(max_tokens=max_tokens, repetition_penalty=repetition_penalty),
        "no_guard": GenerationParams(max_tokens=max_tokens, repetition_penalty=1.0),
    }
    # Both methods of a question side by side in one pool: a neighbour's burst on a shared machine hits both alike.
    jobs = [(item, method) for item in questions for method in methods]

    def ask(job: tuple[dict[str, Any], str]) -> dict[str, Any]:
        item, method = job
        result = model.chat([{"role": "user", "content": item["question"]}], params[method])
        reply = result.text.strip()
        return {
            "answer": reply,
            "correct": has_answer(reply, item["answers"]),
            "repeated_4gram": repeated_ngram(reply),
            "answer_tokens": result.usage.completion_tokens,
            "finish_reason": result.finish_reason,
        }

    outputs = run_concurrently(ask, jobs, concurrency=concurrency, description="chat questions")
    records = []
    for (item, method), out in zip(jobs, outputs, strict=True):
        if isinstance(out, BaseException):
            records.append({**item, "method": method, "error": str(out), "correct": False, "repeated_4gram": False})
        else:
            records.append({**item, "method": method, **out})
    metrics: dict[str, float] = {}
    for method in methods:
        mine = [r for r in records if r["method"] == method]
        ok = [r for r in mine if "error" not in r]
        n, n_ok = max(len(mine), 1), max(len(ok), 1)
        metrics[f"{method}.correct"] = sum(r["correct"] for r in mine) / n
        metrics[f"{method}.repeated_4gram"] = sum(r["repeated_4gram"] for r in mine) / n
        metrics[f"{method}.answer_tokens"] = sum(r["answer_tokens"] for r in ok) / n_ok
        metrics[f"{method}.length_stops"] = sum(r["finish_reason"] == "length" for r in ok) / n_ok
        metrics[f"{method}.error_rate"] = (len(mine) - len(ok)) / n
    config = {
        "data": str(data),
        "questions": len(questions),
        "limit": limit,
        "model": model.name,
        "repetition_penalty": repetition_penalty,
        "max_tokens": max_tokens,
        "concurrency": concurrency,
        "methods": list(methods),
    }
    return EvalResult(task="chat", config=config, metrics=metrics, items=records)
