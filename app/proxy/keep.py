"""What pruning must never drop: the strings a question names, and a request's `keep` patterns.

A pruner scores meaning; an ID, a number or a quoted word the question asks about is exact, and a sentence that
holds it is kept whatever its score. Patterns come from clients, so they are bounded in number and length and run
under a time budget (the `regex` module's `timeout`): a pattern built to backtrack forever stops, it cannot stall
a worker.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import regex

from prunekit.decoding.errors import InvalidRequestError

__all__ = ["MAX_KEEP_PATTERNS", "MAX_PATTERN_CHARS", "KeepRules", "KeepTimeoutError", "question_terms"]

MAX_KEEP_PATTERNS = 16
MAX_PATTERN_CHARS = 256
MAX_TERMS = 32
_QUOTED = re.compile(r"\"([^\"\n]{1,200})\"|“([^”\n]{1,200})”|(?<!\w)'([^'\n]{1,200})'(?!\w)|`([^`\n]{1,200})`")
_WITH_DIGIT = re.compile(r"(?<![\w-])[\w$€£#-]*\d[\w./:-]*(?<![.:])")  # 42, 3.5, v2, ORD-1234, 10:30, $5
_CODE_ID = re.compile(r"(?<![\w-])[A-Z][A-Z0-9]*(?:[-_][A-Z0-9]+)+(?![\w-])")  # SKU_A, ERR-NOT-FOUND


class KeepTimeoutError(Exception):
    """A keep pattern ran past its time budget (the request is forwarded unpruned)."""


def question_terms(question: str) -> list[str]:
    """The exact strings a question names: quoted words, numbers and IDs (at most 32).

    >>> question_terms('Which order, ORD-1234 or "blue widget", shipped on 2021-03-04?')
    ['blue widget', 'ORD-1234', '2021-03-04']
    """
    terms = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(question)]
    terms += [m.group(0) for m in _WITH_DIGIT.finditer(question)]
    terms += [m.group(0) for m in _CODE_ID.finditer(question)]
    unique = list(dict.fromkeys(t.strip() for t in terms if t.strip()))
    return unique[:MAX_TERMS]


@dataclass(frozen=True)
class KeepRules:
    """Protected strings (case-insensitive) and compiled patterns, with the time budget the patterns share."""

    terms: tuple[str, ...] = ()
    patterns: tuple[regex.Pattern[str], ...] = ()
    budget_s: float = 0.25

    @classmethod
    def compile(cls, patterns: Sequence[object], budget_s: float = 0.25) -> tuple[regex.Pattern[str], ...]:
        """Check and compile a request's `keep` patterns; a bad one is a 400 that says which and why."""
        if len(patterns) > MAX_KEEP_PATTERNS:
            raise InvalidRequestError(f"prunekit.keep has {len(patterns)} patterns; the limit is {MAX_KEEP_PATTERNS}")
        compiled = []
        for n, pattern in enumerate(patterns):
            if not isinstance(pattern, str) or not pattern:
                raise InvalidRequestError(f"prunekit.keep[{n}] must be a non-empty regular expression string")
            if len(pattern) > MAX_PATTERN_CHARS:
                raise InvalidRequestError(
                    f"prunekit.keep[{n}] has {len(pattern)} characters; the limit is {MAX_PATTERN_CHARS}"
                )
            try:
                compiled.append(regex.compile(pattern))
            except (regex.error, OverflowError, RecursionError) as exc:
                raise InvalidRequestError(f"prunekit.keep[{n}] is not a valid regular expression: {exc}") from exc
        return tuple(compiled)

    def protected_spans(self, text: str, deadline: float) -> list[tuple[int, int]]:
        """[start, end) character spans of `text` that must survive; `deadline` is a `time.monotonic()` instant."""
        spans = []
        for term in self.terms:  # escaped literals: linear time, offsets of the text itself
            spans.extend(m.span() for m in re.finditer(re.escape(term), text, re.IGNORECASE))
        for pattern in self.patterns:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KeepTimeoutError("the keep patterns ran out of their time budget")
            try:
                spans.extend(m.span() for m in pattern.finditer(text, timeout=left) if m.end() > m.start())
            except TimeoutError as exc:
                raise KeepTimeoutError(f"keep pattern {pattern.pattern[:60]!r} ran past its time budget") from exc
        return spans
