"""`prunekit eval qa`: context pruning against its baselines on HotpotQA (distractor setting) and SQuAD.

Per question, every passage (HotpotQA: the 10 gold + distractor paragraphs; SQuAD: the paragraph) is
pruned by each method, then the LLM answers from what is left. Methods, side by side:
- `full`: no pruning;
- `prunekit`: the context pruner at `threshold` (a sweep over `thresholds` goes to the plot);
- `biencoder`: MiniLM cosine between the question and each sentence, the best sentences kept until the
  question's kept-token count equals prunekit's (matched compression, per question);
- `random`: random sentences to the same per-question token budget.
Metrics (`<method>.<metric>`): `compression` (share of context tokens removed), `evidence_recall` (share of
gold supporting sentences kept), `all_evidence_kept`, `recall_at_1` (HotpotQA: a gold passage ranked
first), `answer_f1`, `answer_em`, and `prunekit.prune_ms_per_passage`. A gold sentence counts as kept
when most of its characters are inside kept sentences, so the pruner's own sentence splitter may differ
from the dataset's. A context longer than the reader's window is cut at its end to fit (`fit_context`;
`context_cut_chars` in the item's record).
"""

from __future__ import annotations

import bisect
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prunekit.decoding import ChatModel, GenerationParams, InvalidRequestError, PromptEncoder
from prunekit.eval.harness import EvalResult, progress_bar, run_concurrently
from prunekit.eval.metrics.qa import exact_match, max_over_golds, token_f1

__all__ = ["QAItem", "evaluate_qa", "load_qa"]

METHODS = ("full", "prunekit", "biencoder", "random")
READER_PROMPT = (
    "Answer the question from the context with a short phrase only.\n\nContext:\n{context}\n\nQuestion: {question}"
)

Span = tuple[int, int]


@dataclass(frozen=True)
class QAItem:
    question: str
    answers: tuple[str, ...]
    titles: tuple[str, ...]
    passages: tuple[str, ...]  # the dataset's sentences of each passage joined by single spaces
    gold: tuple[tuple[Span, ...], ...]  # per passage, character spans of its gold sentences

    @property
    def gold_passages(self) -> set[int]:
        return {i for i, spans in enumerate(self.gold) if spans}


def _join(sentences: tuple[str, ...], gold_ids: set[int]) -> tuple[str, tuple[Span, ...]]:
    text, spans, pos = [], [], 0
    for i, s in enumerate(sentences):
        s = s.strip()
        if not s:
            continue
        if text:
            pos += 1
        if i in gold_ids:
            spans.append((pos, pos + len(s)))
        text.append(s)
        pos += len(s)
    return " ".join(text), tuple(spans)


def load_qa(path: Path, limit: int | None = None) -> list[QAItem]:
    """HotpotQA (original or HF-datasets layout) or SQuAD v1.1, by content."""
    from prunekit.context_pruner.data import read_hotpotqa, read_squad
    from prunekit.context_pruner.sentences import split_sentences

    if not path.is_file():
        raise InvalidRequestError(f"{path} does not exist: pass --data PATH to a HotpotQA or SQuAD file")
    items: list[QAItem] = []
    if _is_squad(path):
        for it in read_squad(path)[:limit]:
            spans = split_sentences(it.context)
            end = it.answer_start + max(1, len(it.answer_text))
            gold = tuple((a, b) for a, b in spans if a < end and it.answer_start < b)
            items.append(QAItem(it.question, it.answers or (it.answer_text,), (it.title,), (it.context,), (gold,)))
        return items
    try:
        raw = read_hotpotqa(path)
    except (ValueError, KeyError, SyntaxError) as exc:
        raise InvalidRequestError(f"{path} is neither HotpotQA nor SQuAD v1.1 ({exc})") from exc
    for it in raw[:limit]:
        titles, passages, gold = [], [], []
        for title, sentences in it.paragraphs:
            text, spans = _join(sentences, {i for t, i in it.supporting if t == title})
            titles.append(title)
            passages.append(text)
            gold.append(spans)
        items.append(QAItem(it.question, (it.answer,), tuple(titles), tuple(passages), tuple(gold)))
    return items


def _is_squad(path: Path) -> bool:
    """SQuAD files are one JSON object with a `data` list; HotpotQA is a JSON list or JSON lines."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False  # JSON lines: HotpotQA's HF-datasets layout
    return isinstance(doc, dict) and isinstance(doc.get("data"), list)


def _covered(span: Span, kept: list[Span]) -> bool:
    inside = sum(max(0, min(span[1], b) - max(span[0], a)) for a, b in kept)
    return inside > 0.5 * (span[1] - span[0])


def _evidence(item: QAItem, kept: list[list[Span]]) -> tuple[int, int]:
    """(gold sentences kept, gold sentences) of one question."""
    hits = sum(_covered(g, kept[p]) for p, spans in enumerate(item.gold) for g in spans)
    return hits, sum(len(spans) for spans in item.gold)


def _text_of(item: QAItem, kept: list[list[Span]]) -> str:
    parts = []
    for title, passage, spans in zip(item.titles, item.passages, kept, strict=True):
        body = " ".join(passage[a:b] for a, b in sorted(spans))
        if body:
            parts.append(f"{title}: {body}" if title else body)
    return "\n".join(parts)


def evaluate_qa(
    model: ChatModel | None,
    data: Path,
    *,
    pruner: Any,
    limit: int | None = None,
    threshold: float = 0.1,
    thresholds: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7),
    concurrency: int = 8,
    seed: int = 0,
    answer: bool = True,
    max_tokens: int = 24,
) -> EvalResult:
    """Run the four methods on `data` and score them (see the module docstring)."""
    from prunekit.decoding.backends.embeddings import load_embedder

    items = load_qa(data, limit)
    if not items:
        raise InvalidRequestError(f"{data} holds no questions")
    if answer and model is None:
        raise InvalidRequestError("answering needs a model: pass one, or answer=False")
    sweep = tuple(sorted({*thresholds, threshold}))
    embedder = load_embedder()
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    sweep_points: dict[float, list[tuple[int, int, int, int]]] = {t: [] for t in sweep}
    prune_seconds, passages_seen = 0.0, 0

    with progress_bar() as bar:
        task = bar.add_task("pruning", total=len(items))
        for item in items:
            started = time.perf_counter()
            by_t = pruner.sweep(item.question, list(item.passages), list(item.titles), sweep)
            prune_seconds += time.perf_counter() - started
            passages_seen += len(item.passages)
            for t, results in by_t.items():
                sweep_points[t].append(_sweep_point(item, results))
            records += _method_records(item, by_t[threshold], pruner.tokenizer, embedder, rng)
            bar.advance(task)

    if answer:
        _answer(model, records, concurrency, max_tokens)
    metrics = _metrics(records, answer)
    metrics["prunekit.prune_ms_per_passage"] = 1000 * prune_seconds / max(passages_seen, 1)
    config = {
        "data": str(data),
        "limit": limit,
        "threshold": threshold,
        "sweep": _sweep_table(sweep_points),
        "model": model.name if model is not None else None,
        "questions": len(items),
        "answered": answer,
    }
    return EvalResult(task="qa", config=config, metrics=metrics, items=records)


def _sweep_point(item: QAItem, results: list[Any]) -> tuple[int, int, int, int]:
    """(gold sentences kept, gold sentences, tokens kept, tokens) of one question at one threshold."""
    hits, total = _evidence(item, [list(r.kept_spans) for r in results])
    return hits, total, sum(r.tokens_after for r in results), sum(r.tokens_before for r in results)


def _sweep_table(points: dict[float, list[tuple[int, int, int, int]]]) -> dict[str, dict[str, float]]:
    return {
        str(t): {
            "compression": 1 - sum(p[2] for p in pts) / max(sum(p[3] for p in pts), 1),
            "evidence_recall": sum(p[0] for p in pts) / max(sum(p[1] for p in pts), 1),
        }
        for t, pts in points.items()
    }


def _method_records(
    item: QAItem, ours: list[Any], tokenizer: Any, embedder: Any, rng: random.Random
) -> list[dict[str, Any]]:
    """One record per method for one question: what each keeps (the baselines matched to prunekit's kept-token
    count), which passage each ranks first, and the evidence kept."""
    before = sum(r.tokens_before for r in ours)
    budget = sum(r.tokens_after for r in ours)
    spans = [list(r.sentence_spans) for r in ours]
    sentences = [(p, s) for p, ss in enumerate(spans) for s in ss]
    lengths = [len(tokenizer(item.passages[p][a:b], add_special_tokens=False)["input_ids"]) for p, (a, b) in sentences]
    vectors = embedder.encode([item.question] + [item.passages[p][a:b] for p, (a, b) in sentences])
    scores = vectors[1:] @ vectors[0] if sentences else np.zeros(0)  # question-sentence cosines
    passage_vectors = embedder.encode(list(item.passages))
    kept_by = {
        "full": [list(s) for s in spans],
        "prunekit": [list(r.kept_spans) for r in ours],
        "biencoder": _fill(sentences, lengths, list(np.argsort(-scores)), budget, len(spans)),
        "random": _fill(sentences, lengths, rng.sample(range(len(sentences)), len(sentences)), budget, len(spans)),
    }
    first = {
        "full": None,
        "prunekit": int(np.argmax([r.rerank_score for r in ours])),
        "biencoder": int(np.argmax(passage_vectors @ vectors[0])),
        "random": rng.randrange(len(item.passages)),
    }
    records = []
    for method in METHODS:
        kept = kept_by[method]
        hits, total = _evidence(item, kept)
        if method == "full":
            after = before
        elif method == "prunekit":
            after = budget  # the pruner's own count (kept sentences of each passage)
        else:
            after = sum(lengths[i] for i, (p, span) in enumerate(sentences) if span in kept[p])
        records.append(
            {
                "method": method,
                "question": item.question,
                "answers": list(item.answers),
                "tokens_before": before,
                "tokens_after": after,
                "evidence_hits": hits,
                "evidence_total": total,
                "first_passage": first[method],
                "first_is_gold": None if first[method] is None else first[method] in item.gold_passages,
                "passages": len(item.passages),
                "context": _text_of(item, kept),
            }
        )
    return records


def _answer(model: Any, records: list[dict[str, Any]], concurrency: int, max_tokens: int) -> None:
    """The LLM answers each record's question from its context; F1 and EM against the gold answers (in place)."""
    params = GenerationParams(max_tokens=max_tokens)

    def read(record: dict[str, Any]) -> str:
        context = fit_context(model, record["context"], record["question"], max_tokens)
        record["context_cut_chars"] = len(record["context"]) - len(context)
        return model.chat(_reader_messages(context, record["question"]), params).text.strip()

    outputs = run_concurrently(read, records, concurrency=concurrency, description="answering")
    for record, out in zip(records, outputs, strict=True):
        if isinstance(out, BaseException):
            record.update(error=str(out), prediction="", f1=0.0, em=0.0)
        else:
            record.update(
                prediction=out,
                f1=max_over_golds(token_f1, out, record["answers"]),
                em=max_over_golds(exact_match, out, record["answers"]),
            )


def _fill(
    sentences: list[tuple[int, Span]], lengths: list[int], order: list[int], budget: int, n: int
) -> list[list[Span]]:
    """Sentences in `order` until the kept token count reaches `budget` (the first one that crosses it is kept)."""
    kept: list[list[Span]] = [[] for _ in range(n)]
    used = 0
    for i in order:
        if used >= budget:
            break
        p, span = sentences[i]
        kept[p].append(span)
        used += lengths[i]
    return kept


def _reader_messages(context: str, question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": READER_PROMPT.format(context=context, question=question)}]


def fit_context(model: ChatModel, context: str, question: str, max_tokens: int) -> str:
    """`context`, its tail cut at a word boundary where the reader's prompt + answer would overflow the model's
    window (`context_length`); unchanged for a model that cannot count its tokens (a served model), whose
    server then answers with its own error. Every method's context goes through this, so a long unpruned
    context is read as far as the window goes rather than counted as a failure."""
    encode, window = (model.encode_chat, model.context_length) if isinstance(model, PromptEncoder) else (None, None)
    if encode is None or window is None:
        return context
    budget = window - max_tokens

    def fits(n_words: int) -> bool:
        return len(encode(_reader_messages(" ".join(words[:n_words]), question))) <= budget

    words = context.split(" ")
    if fits(len(words)):
        return context
    keep = bisect.bisect_left(range(len(words) + 1), True, key=lambda n: not fits(n)) - 1
    return " ".join(words[: max(keep, 0)])


def _metrics(records: list[dict[str, Any]], answered: bool) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for method in METHODS:
        rows = [r for r in records if r["method"] == method]
        n = max(len(rows), 1)
        before = sum(r["tokens_before"] for r in rows)
        metrics[f"{method}.compression"] = 1 - sum(r["tokens_after"] for r in rows) / max(before, 1)
        metrics[f"{method}.evidence_recall"] = sum(r["evidence_hits"] for r in rows) / max(
            sum(r["evidence_total"] for r in rows), 1
        )
        metrics[f"{method}.all_evidence_kept"] = sum(r["evidence_hits"] == r["evidence_total"] for r in rows) / n
        ranked = [r for r in rows if r["first_is_gold"] is not None and r["passages"] > 1]
        if ranked:  # only where there are distractors to rank against (HotpotQA), never for `full`
            metrics[f"{method}.recall_at_1"] = sum(r["first_is_gold"] for r in ranked) / len(ranked)
        if answered:
            metrics[f"{method}.answer_f1"] = sum(r["f1"] for r in rows) / n
            metrics[f"{method}.answer_em"] = sum(r["em"] for r in rows) / n
    return metrics


def plot_sweep(result: EvalResult, out_dir: Path) -> Path:
    """Compression against evidence recall: prunekit's threshold sweep and the baselines' points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = result.config["sweep"]
    thresholds = sorted(sweep, key=float)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(
        [sweep[t]["compression"] for t in thresholds],
        [sweep[t]["evidence_recall"] for t in thresholds],
        marker="o",
        label="prunekit (threshold sweep)",
    )
    for t in thresholds:
        ax.annotate(t, (sweep[t]["compression"], sweep[t]["evidence_recall"]), fontsize=7)
    for method in ("biencoder", "random"):
        c, r = result.metrics.get(f"{method}.compression"), result.metrics.get(f"{method}.evidence_recall")
        if c is not None and r is not None:
            ax.scatter([c], [r], label=method)
    ax.set_xlabel("compression (share of context tokens removed)")
    ax.set_ylabel("evidence recall")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out_dir / "sweep.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
