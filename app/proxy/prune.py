"""Prune the passages of a chat request with the question as the query (blocking; run it in a worker thread).

Each passage goes to the context pruner (Provence, Chirkova et al., ICLR 2025, arXiv 2501.16214) with the question:
it keeps whole sentences, verbatim and in order, and scores the passage; past `top_k` a passage keeps nothing. Then
the keep rules put back every sentence that holds a string the question names or a `keep` pattern matches. A
passage left with no sentence goes whole, its marker or tags included; the rest of every message stays as it was.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prunekit.app.proxy.config import RequestOptions
from prunekit.app.proxy.extract import Extraction, Passage, TextRef, message_texts
from prunekit.app.proxy.keep import KeepRules, question_terms
from prunekit.context_pruner import ContextPruner, PrunedContext

__all__ = ["MAX_QUESTION_CHARS", "PassageReport", "PrunedRequest", "count_tokens", "prune_messages"]

MAX_QUESTION_CHARS = 4_000  # the pruner reads at most 64 question tokens anyway
_KEEP_BUDGET_S = 0.25  # all keep patterns of one request, together


@dataclass(frozen=True)
class PassageReport:
    """What pruning did to one passage (the `explain` answer)."""

    message: int
    title: str | None
    rerank_score: float
    sentences: int
    dropped: tuple[str, ...]  # the dropped sentences, verbatim

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "title": self.title, "rerank_score": round(self.rerank_score, 4),
                "sentences": self.sentences, "dropped": list(self.dropped)}  # fmt: skip


@dataclass(frozen=True)
class PrunedRequest:
    messages: list[Any]
    tokens_before: int  # context tokens (the pruner's tokenizer) of the recognised passages
    tokens_after: int
    passages: list[PassageReport] = field(default_factory=list)


def count_tokens(pruner: ContextPruner, texts: Sequence[str]) -> int:
    """Tokens of `texts` under the pruner's tokenizer (the figure the `x-prunekit-context-tokens-*` headers give)."""
    if not texts:
        return 0
    ids = pruner.tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False, verbose=False)[
        "input_ids"
    ]
    return sum(len(i) for i in ids)


def prune_messages(
    pruner: ContextPruner, messages: list[Any], extraction: Extraction, options: RequestOptions
) -> PrunedRequest:
    """`messages` with every passage of `extraction` pruned for its question; the input is left untouched.
    Raises `KeepTimeoutError` when the keep patterns run past their budget, and whatever the pruner raises."""
    texts = message_texts(messages)
    passages = extraction.passages
    bodies = [texts[p.ref][p.start : p.end] for p in passages]
    titles = [p.title for p in passages]
    question = extraction.question[-MAX_QUESTION_CHARS:]
    results: list[PrunedContext] = pruner.prune(  # type: ignore[assignment]
        question, bodies, titles=titles if any(titles) else None, threshold=options.threshold, top_k=options.top_k
    )
    rules = KeepRules(tuple(question_terms(question)), options.keep)
    deadline = time.monotonic() + _KEEP_BUDGET_S
    new_bodies, reports = [], []
    for passage, body, result in zip(passages, bodies, results, strict=True):
        kept = _with_protected(result, rules.protected_spans(body, deadline))
        new_bodies.append(_join_kept(body, result.sentence_spans, kept))
        dropped = tuple(body[a:b].strip() for n, (a, b) in enumerate(result.sentence_spans) if n not in kept)
        reports.append(PassageReport(passage.ref[0], passage.title, result.rerank_score, len(kept) + len(dropped),
                                     dropped))  # fmt: skip
    out = copy.deepcopy(messages)
    for ref, text in _rebuilt(texts, passages, new_bodies).items():
        _write(out, ref, text)
    return PrunedRequest(out, count_tokens(pruner, bodies), count_tokens(pruner, new_bodies), reports)


def _with_protected(result: PrunedContext, protected: list[tuple[int, int]]) -> set[int]:
    """The sentences the pruner kept, plus every sentence a protected span touches."""
    kept = set(result.kept_sentences)
    for n, (a, b) in enumerate(result.sentence_spans):
        if n not in kept and any(start < b and a < end for start, end in protected):
            kept.add(n)
    return kept


def _join_kept(body: str, spans: Sequence[tuple[int, int]], kept: set[int]) -> str:
    """Kept sentences verbatim and in order: the original text between neighbours, one space across a gap."""
    pieces: list[str] = []
    previous = None
    for n in sorted(kept):
        a, b = spans[n]
        if previous is not None:
            pieces.append(body[spans[previous][1] : a] if n == previous + 1 else " ")
        pieces.append(body[a:b])
        previous = n
    return "".join(pieces).strip()


def _rebuilt(texts: dict[TextRef, str], passages: list[Passage], bodies: list[str]) -> dict[TextRef, str]:
    """Each touched text with its passages replaced (an emptied passage removed whole), right to left so that the
    offsets of the passages still to do stay valid."""
    out: dict[TextRef, str] = {}
    order = sorted(range(len(passages)), key=lambda i: (passages[i].ref[0], passages[i].ref[1] or 0,
                                                        passages[i].drop_start), reverse=True)  # fmt: skip
    for i in order:
        p, body = passages[i], bodies[i]
        text = out.get(p.ref, texts[p.ref])
        cut = (p.start, p.end) if body else (p.drop_start, p.drop_end)  # an emptied passage goes with its marker
        out[p.ref] = text[: cut[0]] + body + text[cut[1] :]
    return out


def _write(messages: list[Any], ref: TextRef, text: str) -> None:
    index, part = ref
    if part is None:
        messages[index]["content"] = text
    else:
        messages[index]["content"][part]["text"] = text
