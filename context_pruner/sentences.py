"""Sentence spans with character offsets, and the token -> sentence map.

Provence (Chirkova et al., ICLR 2025, arXiv 2501.16214) labels tokens but prunes whole sentences. We split with
blingfire (a compiled finite-state splitter: ~0.2 ms for a 700-character passage, about 20x faster than pysbd, which
matters when the encoder itself takes ~10 ms a passage) and keep *character offsets*, so the pruned text is cut out
of the caller's string verbatim, never re-joined from normalised sentences.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import blingfire
import numpy as np

__all__ = ["Span", "join_spans", "sentences_to_text", "split_sentences", "token_sentence_ids"]

logger = logging.getLogger(__name__)

Span = tuple[int, int]  # [start, end) character offsets into the passage text


def _strip_span(text: str, start: int, end: int) -> Span | None:
    """Shrink a span to its non-space characters; None when nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def split_sentences(text: str) -> list[Span]:
    """Sentence spans of `text`, in order, non-overlapping, without surrounding whitespace.

    >>> t = "Paris is in France. It is big."
    >>> [t[a:b] for a, b in split_sentences(t)]
    ['Paris is in France.', 'It is big.']
    """
    if not text or text.isspace():
        return []  # blingfire asserts on empty input
    try:
        _, offsets = blingfire.text_to_sentences_and_offsets(text)
    except (AssertionError, UnicodeError) as err:  # defensive: unusual code points; one sentence beats a crash
        logger.warning("sentence splitter failed (%s); treating the passage as one sentence", err)
        offsets = [(0, len(text))]
    spans: list[Span] = []
    last_end = 0
    for start, end in offsets:
        start, end = max(int(start), last_end), min(int(end), len(text))  # keep spans ordered and disjoint
        span = _strip_span(text, start, end)
        if span is not None:
            spans.append(span)
            last_end = span[1]
    return spans or [s for s in [_strip_span(text, 0, len(text))] if s is not None]


def sentences_to_text(sentences: Sequence[str]) -> tuple[str, list[Span]]:
    """Concatenate pre-split sentences (HotpotQA keeps their leading spaces) and return the text with their spans.

    A sentence with no leading space gets one, so words never glue together; empty sentences keep an empty span
    slot out of the list (index alignment with the dataset's `sent_id` matters), as `(pos, pos)`.
    """
    parts: list[str] = []
    spans: list[Span] = []
    pos = 0
    for i, sent in enumerate(sentences):
        piece = sent if (i == 0 or sent[:1].isspace() or not sent) else " " + sent
        stripped = _strip_span(piece, 0, len(piece))
        spans.append((pos + stripped[0], pos + stripped[1]) if stripped else (pos, pos))
        parts.append(piece)
        pos += len(piece)
    return "".join(parts), spans


def token_sentence_ids(offsets: np.ndarray, spans: Sequence[Span]) -> np.ndarray:
    """Index of the sentence each token belongs to, from the tokenizer's `(N, 2)` character offsets.

    A token belongs to the last sentence that starts at or before the token's first character (tokens never
    start in the whitespace between sentences; if one did it would join the sentence before it). -1 when there
    are no sentences.
    """
    offsets = np.asarray(offsets).reshape(-1, 2)  # (N, 2)
    if len(spans) == 0:
        return np.full(len(offsets), -1, dtype=np.int64)
    starts = np.fromiter((s for s, _ in spans), dtype=np.int64, count=len(spans))  # (S,)
    ids = np.searchsorted(starts, offsets[:, 0], side="right") - 1  # (N,)
    return np.clip(ids, 0, len(spans) - 1).astype(np.int64)


def join_spans(text: str, spans: Sequence[Span], keep: Sequence[int]) -> str:
    """The kept sentences cut out of `text`: neighbours keep the original text between them, gaps become one space.

    >>> t = "A b. C d. E f."
    >>> join_spans(t, split_sentences(t), [0, 2])
    'A b. E f.'
    """
    pieces: list[str] = []
    run_start = run_end = None
    prev = None
    for i in sorted(set(keep)):
        start, end = spans[i]
        if start == end:
            continue
        if run_start is not None and prev is not None and i == prev + 1:
            run_end = end  # contiguous: keep whatever separated them (newlines, double spaces)
        else:
            if run_start is not None:
                pieces.append(text[run_start:run_end])
            run_start, run_end = start, end
        prev = i
    if run_start is not None:
        pieces.append(text[run_start:run_end])
    return " ".join(pieces)
