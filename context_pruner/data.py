"""Training passages for the context pruner, read from the official on-disk layouts of HotpotQA and SQuAD v1.1.

Provence (Chirkova et al., ICLR 2025, arXiv 2501.16214) trains on passages of 1-10 sentences with the title
prepended, each with a keep/drop label per sentence. Gold labels here: HotpotQA's supporting facts, and the SQuAD
sentence that contains the answer span. Passages with no relevant sentence (HotpotQA distractors, SQuAD chunks
without the answer) are kept with all labels 0: they teach the model to drop everything.

The readers are pure (no model, no randomness beyond an explicit `random.Random`); evaluation splits are refused
by name (`dev`, `test`) so nothing is ever trained on what it is evaluated on.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunekit.context_pruner.errors import EvaluationSplitError
from prunekit.context_pruner.sentences import split_sentences

__all__ = [
    "HotpotItem",
    "Passage",
    "SquadItem",
    "hotpot_passages",
    "is_evaluation_split",
    "is_held_out_article",
    "is_squad_file",
    "read_hotpotqa",
    "read_squad",
    "read_training_passages",
    "read_unlabeled_jsonl",
    "squad_passages",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Passage:
    """One training passage: a question, a title, 1-10 sentences and a 0/1 label per sentence (None: unlabeled)."""

    question: str
    title: str | None
    sentences: tuple[str, ...]
    labels: tuple[int, ...] | None
    group: str  # the question's id: passages of one question compete for the rerank
    source: str  # dataset name

    @property
    def relevant(self) -> bool:
        return bool(self.labels) and any(self.labels)


@dataclass(frozen=True)
class HotpotItem:
    id: str
    question: str
    answer: str
    paragraphs: tuple[tuple[str, tuple[str, ...]], ...]  # (title, sentences)
    supporting: frozenset[tuple[str, int]]  # (title, sentence index)


@dataclass(frozen=True)
class SquadItem:
    id: str
    question: str
    title: str
    context: str
    answer_start: int
    answer_text: str
    answers: tuple[str, ...] = ()  # every gold answer text (dev files list several; scoring takes the best)


def is_evaluation_split(path: str | Path) -> bool:
    """True for files named like evaluation splits (`dev`, `test`): never train on them."""
    name = Path(path).name.lower()
    return any(tag in name for tag in ("dev", "test", "valid"))


def _maybe_literal(value: Any) -> Any:
    """HF-datasets exports sometimes store dicts as Python literals in strings: decode those, keep the rest."""
    return ast.literal_eval(value) if isinstance(value, str) else value


def _hotpot_item(raw: dict[str, Any]) -> HotpotItem:
    context = _maybe_literal(raw["context"])
    facts = _maybe_literal(raw["supporting_facts"])
    if isinstance(context, dict):  # HF layout: {"title": [...], "sentences": [[...], ...]}
        paragraphs = tuple((t, tuple(s)) for t, s in zip(context["title"], context["sentences"], strict=True))
    else:  # original layout: [[title, [sentences]], ...]
        paragraphs = tuple((t, tuple(s)) for t, s in context)
    if isinstance(facts, dict):
        supporting = frozenset((t, int(i)) for t, i in zip(facts["title"], facts["sent_id"], strict=True))
    else:
        supporting = frozenset((t, int(i)) for t, i in facts)
    return HotpotItem(
        id=str(raw.get("id", raw.get("_id", ""))),
        question=raw["question"],
        answer=str(raw.get("answer", "")),
        paragraphs=paragraphs,
        supporting=supporting,
    )


def read_hotpotqa(path: str | Path) -> list[HotpotItem]:
    """HotpotQA in the original layout (a JSON list) or the HF-datasets layout (JSON lines)."""
    text = Path(path).read_text(encoding="utf-8")
    stripped = text.lstrip()
    rows = json.loads(text) if stripped.startswith("[") else [json.loads(line) for line in text.splitlines() if line]
    return [_hotpot_item(r) for r in rows]


def hotpot_passages(items: Iterable[HotpotItem], source: str = "hotpotqa") -> list[Passage]:
    """One passage per paragraph (HotpotQA paragraphs are already 1-10 sentences), labelled by supporting facts."""
    out = []
    for it in items:
        for title, sentences in it.paragraphs:
            labels = tuple(int((title, i) in it.supporting) for i in range(len(sentences)))
            out.append(Passage(it.question, title, tuple(sentences), labels, it.id, source))
    return out


def read_squad(path: str | Path) -> list[SquadItem]:
    """SQuAD v1.1 layout: data -> paragraphs -> qas; the first answer is the gold span, all of them are kept."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    out = []
    for article in doc["data"]:
        title = str(article.get("title", "")).replace("_", " ")
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                if not qa.get("answers"):
                    continue
                ans = qa["answers"][0]
                texts = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                out.append(
                    SquadItem(qa["id"], qa["question"], title, para["context"], ans["answer_start"], ans["text"], texts)
                )
    return out


def _head(path: str | Path) -> str:
    """A file's first characters, enough to tell the dataset layouts apart."""
    with open(path, encoding="utf-8") as f:
        return f.read(4096)


def is_squad_file(path: str | Path) -> bool:
    """Whether a training file has SQuAD v1.1's layout (guessed from its first characters)."""
    head = _head(path)
    return '"data"' in head and '"paragraphs"' in head


def is_held_out_article(title: str, every: int | None) -> bool:
    """Whether a SQuAD article is held out of training for ranking validation: every `every`-th article by a
    stable hash of its title (None or 0: none is). Splitting by article, not by question, keeps a held-out
    question's sibling paragraphs, the hard negatives of its ranking, out of training too."""
    if not every:
        return False
    return int(hashlib.sha256(title.encode("utf-8")).hexdigest(), 16) % every == 0


def _chunk(sentences: Sequence[str], must: int | None, rng: random.Random, max_sentences: int) -> tuple[int, int]:
    """A window [a, b) of 1..max_sentences sentences, containing index `must` when given."""
    n = len(sentences)
    size = rng.randint(1, min(max_sentences, n))
    lo, hi = (0, n - size) if must is None else (max(0, must - size + 1), min(must, n - size))
    a = rng.randint(lo, hi)
    return a, a + size


def squad_passages(
    items: Sequence[SquadItem],
    rng: random.Random,
    max_sentences: int = 10,
    negative_rate: float = 0.3,
    source: str = "squad",
    same_article_negatives: bool = False,
) -> list[Passage]:
    """Per question: a chunk holding the answer sentence (labelled 1, the rest 0); with probability
    `negative_rate` also a chunk of another article, all 0 (the question does not belong to it).

    `same_article_negatives`: the negative comes from another paragraph of the question's own article when it
    has one: a hard negative on the same topic, as the distractors a retriever returns (HotpotQA's are chosen that
    way), which is what teaches the rerank head to rank rather than to tell topics apart."""
    out = []
    paragraphs: dict[str, list[SquadItem]] = {}
    for it in items:
        known = paragraphs.setdefault(it.title, [])
        if all(p.context != it.context for p in known):
            known.append(it)
    titles = sorted({it.title for it in items})
    by_title: dict[str, list[SquadItem]] = {}
    for it in items:
        by_title.setdefault(it.title, []).append(it)
    for it in items:
        spans = split_sentences(it.context)
        if not spans:
            continue
        sentences = [it.context[a:b] for a, b in spans]
        end = it.answer_start + max(1, len(it.answer_text))
        hit = [i for i, (a, b) in enumerate(spans) if a < end and it.answer_start < b]
        if not hit:
            continue
        a, b = _chunk(sentences, hit[0], rng, max_sentences)
        if hit[-1] >= b:  # the answer straddles a sentence boundary: widen the window to hold all of it
            b = min(len(sentences), hit[-1] + 1)
        labels = tuple(int(i in hit) for i in range(a, b))
        out.append(Passage(it.question, it.title, tuple(sentences[a:b]), labels, it.id, source))
        siblings = [p for p in paragraphs[it.title] if p.context != it.context] if same_article_negatives else []
        if (siblings or len(titles) > 1) and rng.random() < negative_rate:
            if siblings:
                donor = rng.choice(siblings)
            else:
                other = rng.choice([t for t in titles if t != it.title] or titles)
                donor = rng.choice(by_title[other])
            dspans = split_sentences(donor.context)
            dsent = [donor.context[x:y] for x, y in dspans]
            if dsent:
                a, b = _chunk(dsent, None, rng, max_sentences)
                out.append(Passage(it.question, donor.title, tuple(dsent[a:b]), (0,) * (b - a), it.id, source))
    return out


def read_unlabeled_jsonl(path: str | Path) -> list[Passage]:
    """JSON lines `{"question", "context", "title"?}` without labels: `labels=None`, for silver labelling."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        row = json.loads(line)
        text = row["context"]
        sentences = tuple(text[a:b] for a, b in split_sentences(text))
        if sentences:
            out.append(Passage(row["question"], row.get("title"), sentences, None, str(row.get("id", n)), "unlabeled"))
    return out


def read_training_passages(
    paths: Sequence[str | Path],
    rng: random.Random,
    hotpot_distractors: int | None = 4,
    squad_questions: int | None = None,
    squad_negative_rate: float = 0.3,
    squad_same_article_negatives: bool = False,
    squad_held_out_every: int | None = None,
) -> list[Passage]:
    """Passages from training files, the layout guessed from content; evaluation splits raise `EvaluationSplitError`
    (a `LeakageError`, also a `ValueError`).

    `hotpot_distractors`: distractor paragraphs kept per HotpotQA question (None: all 8); `squad_questions`:
    a random subset of SQuAD questions (None: all), drawn after the articles `is_held_out_article` sets aside
    for validation are removed.
    """
    out: list[Passage] = []
    for path in paths:
        path = Path(path)
        if is_evaluation_split(path):
            raise EvaluationSplitError(
                f"{path} looks like an evaluation split (dev/test): train only on training splits"
            )
        if is_squad_file(path):
            items = [it for it in read_squad(path) if not is_held_out_article(it.title, squad_held_out_every)]
            if squad_questions is not None and squad_questions < len(items):
                items = rng.sample(items, squad_questions)
            got = squad_passages(
                items, rng, negative_rate=squad_negative_rate, same_article_negatives=squad_same_article_negatives
            )
        elif '"supporting_facts"' in _head(path):
            got = []
            for passages in _by_group(hotpot_passages(read_hotpotqa(path), source=path.stem)):
                gold = [p for p in passages if p.relevant]
                rest = [p for p in passages if not p.relevant]
                if hotpot_distractors is not None:
                    rest = rng.sample(rest, min(hotpot_distractors, len(rest)))
                got.extend(gold + rest)
        else:
            got = read_unlabeled_jsonl(path)
        logger.info("%s: %d passages (%d relevant)", path.name, len(got), sum(p.relevant for p in got))
        out.extend(got)
    return out


def _by_group(passages: Sequence[Passage]) -> list[list[Passage]]:
    groups: dict[str, list[Passage]] = {}
    for p in passages:
        groups.setdefault(p.group, []).append(p)
    return list(groups.values())
