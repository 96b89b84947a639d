"""Answer extraction, normalisation and voting: the pure core of the decision node (no I/O).

AGP (arXiv 2506.02951) asks an LLM decision agent to pick the final answer; for numbers, letters and spans we
extract each agent's answer and vote instead, which costs no tokens and is robust for small models.

- numbers: `#### n` (GSM8K gold), `The answer is n`, else the last number in the text; `1,234` and `$5` handled.
- choices: `answer is (B)`, `Answer: B`, a first line that is a lone letter, `Option B`, else a lone capital letter.
- spans: SQuAD normalisation (lower case, no punctuation, no articles) and token F1.
- code: the last ```python block (or the whole text when it looks like code).
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

__all__ = [
    "clean_span",
    "doctest_asserts",
    "extract_choice",
    "extract_code",
    "extract_number",
    "format_number",
    "majority_vote",
    "normalize_text",
    "numbers_equal",
    "parse_number",
    "span_consensus",
    "token_f1",
]

T = TypeVar("T", bound=Hashable)

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+"
_ANSWER_IS = re.compile(r"answer\s*(?:is|:|=)\s*[:\s$\\({\[]*(" + _NUMBER + ")", re.IGNORECASE)
_HASHES = re.compile(r"####\s*\$?\s*(" + _NUMBER + ")")
_ANY_NUMBER = re.compile(_NUMBER)


def parse_number(text: str) -> float | None:
    """`'1,234.50'` -> 1234.5; None when the text is not a number."""
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        return float(cleaned)
    except ValueError:
        return None


def extract_number(text: str) -> float | None:
    """The final numeric answer in a free-text solution, or None.

    >>> extract_number("16 - 3 - 4 = 9 eggs, 9 * 2 = 18.\\n#### 18")
    18.0
    >>> extract_number("So she has 1,200 dollars. The answer is 1,250.")
    1250.0
    """
    for pattern in (_HASHES, _ANSWER_IS):
        found = pattern.findall(text)
        if found:
            return parse_number(found[-1])
    found = _ANY_NUMBER.findall(text)
    return parse_number(found[-1]) if found else None


def numbers_equal(a: float | None, b: float | None, tol: float = 1e-4) -> bool:
    """Numeric equality with a relative tolerance (SVAMP golds are floats such as `1.0`)."""
    if a is None or b is None:
        return False
    return abs(a - b) <= tol * max(1.0, abs(b))


def format_number(x: float) -> str:
    """18.0 -> '18', 2.5 -> '2.5'."""
    return str(round(x)) if abs(x - round(x)) < 1e-9 else f"{x:.6g}"


def extract_choice(text: str, letters: str = "ABCDE") -> str | None:
    """The option letter an answer picks, or None.

    >>> extract_choice("B\\nBecause the act of 2006 ...")
    'B'
    >>> extract_choice("I think the answer is (c).")
    'C'
    """
    cls = f"[{letters}{letters.lower()}]"
    patterns = (
        rf"answer\s*(?:is|:)?\s*(?:option\s*)?\(?({cls})\)?(?![A-Za-z])",
        rf"^\s*\(?({cls})\)?\s*(?:[.):]|$)",
        rf"option\s*\(?({cls})\)?(?![A-Za-z])",
        rf"\(({cls})\)",
    )
    for i, pattern in enumerate(patterns):
        flags = re.IGNORECASE | (re.MULTILINE if i == 1 else 0)
        m = re.search(pattern, text, flags)
        if m:
            return m.group(1).upper()
    m = re.search(rf"(?<![A-Za-z'])([{letters}])(?![A-Za-z'])", text)  # a lone capital letter
    return m.group(1) if m else None


def normalize_text(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 between a prediction and one gold answer.

    >>> token_f1("the Denver Broncos", "Denver Broncos")
    1.0
    """
    pred, ref = normalize_text(prediction).split(), normalize_text(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = collections.Counter(pred) & collections.Counter(ref)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


# "Answer:", "Final answer -", and the small models' "The answer is: X" / "The answer to this question is: X"
_SPAN_PREFIX = re.compile(
    r"^\s*(?:the\s+)?(?:final\s+)?(?:short\s+)?answer(?:\s+to\s+(?:this|the)\s+question)?(?:\s*[:\-]|\s+is\b\s*:?)\s*",
    re.IGNORECASE,
)


def clean_span(text: str, context: str = "", max_words: int = 8, question: str = "") -> str:
    """A short answer span from an agent's reply: first non-empty line (or the one marked `Answer:`), no prefix,
    quotes or final period, cut to the first sentence; a long reply is cut to its longest run of words found in
    the paragraph; leading words that only repeat the question are dropped; at most `max_words` words (SQuAD gold
    answers are short, and token F1 punishes every extra word).

    >>> clean_span('Answer: "Denver Broncos".\\nThey won.')
    'Denver Broncos'
    >>> clean_span("the lighthouse is painted red", question="What colour is the lighthouse?")
    'painted red'
    >>> clean_span("The answer to this question is: Devonport")
    'Devonport'
    """
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    line = next((ln for ln in lines if _SPAN_PREFIX.match(ln)), lines[0])
    span = _SPAN_PREFIX.sub("", line)
    span = re.split(r"(?<=[a-z0-9)\]])\.\s", span, maxsplit=1)[0]
    span = span.strip().strip("\"'`*").rstrip(".").strip().strip("\"'`*").strip()
    words = span.split()
    if len(words) > max_words and context:
        best = ""  # the reply's longest word run that occurs verbatim in the paragraph
        for i in range(len(words)):
            for j in range(len(words), i, -1):
                piece = " ".join(words[i:j])
                if len(piece) > len(best) and piece in context:
                    best = piece
                    break
        words = best.split() or words
    asked = set(normalize_text(question).split()) | {"is", "are", "was", "were"}
    while len(words) > 1 and normalize_text(words[0]) in asked | {""}:
        words = words[1:]  # "the lighthouse is red" answers "what colour is the lighthouse" with "red"
    return " ".join(words[:max_words])


def majority_vote(values: Sequence[T | None]) -> T | None:
    """Most common non-None value; ties go to the value seen LAST (later agents read more of the others).

    >>> majority_vote([3.0, 4.0, 4.0, None])
    4.0
    >>> majority_vote(["A", "B"])
    'B'
    """
    present = [v for v in values if v is not None]
    if not present:
        return None
    counts = collections.Counter(present)
    top = max(counts.values())
    return next(v for v in reversed(present) if counts[v] == top)


def span_consensus(spans: Sequence[str], context: str = "", similarity: Callable[[str, str], float] = token_f1) -> str:
    """The span that agrees most with the others (sum of token F1: a soft majority vote); ties prefer a span
    found in the paragraph, then the shorter one (precision helps token F1), then the later one.

    >>> span_consensus(["Denver Broncos", "the Broncos", "Carolina Panthers"])
    'the Broncos'
    """
    candidates = [s for s in spans if s.strip()]
    if not candidates:
        return ""
    lowered = context.lower()

    def key(i: int) -> tuple[float, int, int, int]:
        s = candidates[i]
        agreement = sum(similarity(s, o) for j, o in enumerate(candidates) if j != i)
        return (round(agreement, 6), int(bool(lowered) and s.lower() in lowered), -len(s.split()), i)

    return candidates[max(range(len(candidates)), key=key)]


_CODE_BLOCK = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL)


def extract_code(text: str) -> str | None:
    """The last fenced Python block; the text itself when it has no fence but starts like code; else None.

    >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```")
    'def f():\\n    return 1'
    """
    blocks = [b.strip("\n") for b in _CODE_BLOCK.findall(text) if b.strip()]
    if blocks:
        return blocks[-1].rstrip()
    stripped = text.strip()
    if re.match(r"^(def |import |from |class |@)", stripped):
        return stripped
    return None


def doctest_asserts(prompt: str) -> list[str]:
    """Visible tests from a docstring's examples: `>>> f(1)` followed by `2` becomes `assert f(1) == 2`.

    >>> doctest_asserts('def f(x):\\n    \"\"\"\\n    >>> f(1)\\n    2\\n    \"\"\"\\n')
    ['assert f(1) == 2']
    """
    lines = [ln.strip() for ln in prompt.splitlines()]
    tests: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith(">>>") and i + 1 < len(lines):
            call, expected = line[3:].strip(), lines[i + 1]
            if call and expected and not expected.startswith(">>>") and not expected.startswith('"""'):
                tests.append(f"assert {call} == {expected}")
    return tests
