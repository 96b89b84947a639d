"""Answer extraction, normalisation and voting."""

from __future__ import annotations

import pytest

from prunekit.graph_pruning.answers import (
    clean_span,
    doctest_asserts,
    extract_choice,
    extract_code,
    extract_number,
    format_number,
    majority_vote,
    numbers_equal,
    span_consensus,
    token_f1,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Janet sells 9 eggs.\n#### 18", 18.0),
        ("so 3 + 4 = 7. The answer is 7", 7.0),
        ("The answer is $1,250.", 1250.0),
        ("Answer: -3.5", -3.5),
        ("first 12 then 40 apples", 40.0),
        ("The answer is 140\nBecause 2 * 70 = 140 and 3 more checks", 140.0),
        ("no numbers here", None),
    ],
)
def test_extract_number(text: str, expected: float | None) -> None:
    assert extract_number(text) == expected


def test_numbers_equal_and_format() -> None:
    assert numbers_equal(18.0, 18.0) and numbers_equal(1.00001, 1.0) and not numbers_equal(2.0, 3.0)
    assert not numbers_equal(None, 1.0)
    assert format_number(18.0) == "18" and format_number(2.5) == "2.5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B\nBecause the 2006 act ...", "B"),
        ("The answer is (c).", "C"),
        ("Answer: D", "D"),
        ("I pick option A since ...", "A"),
        ("(E) is right", "E"),
        ("nothing useful", None),
    ],
)
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected


def test_extract_choice_respects_letters() -> None:
    assert extract_choice("E", "ABCD") is None


def test_token_f1_and_span_cleaning() -> None:
    assert token_f1("the Denver Broncos", "Denver Broncos") == 1.0
    assert token_f1("Broncos", "Denver Broncos") == pytest.approx(2 / 3)
    assert token_f1("Panthers", "Denver Broncos") == 0.0
    assert clean_span('Answer: "Denver Broncos".\nThey won the game.') == "Denver Broncos"
    assert clean_span("The Broncos. They won.") == "Broncos"  # a leading article is dropped (F1 ignores it)
    context = "The game was won by the Denver Broncos in February 2016 at Levi's Stadium."
    long = "I believe that the team which won was the Denver Broncos in February 2016 at Levi's Stadium"
    assert clean_span(long, context) == "Denver Broncos in February 2016 at Levi's Stadium"
    assert clean_span(long, context, max_words=3) == "Denver Broncos in"
    assert clean_span("The lighthouse is red.", question="What colour is the lighthouse?") == "red"
    assert clean_span("Denver", question="Who is Denver?") == "Denver"  # never empty
    # the small model's lead-ins are not part of the span
    assert clean_span("The answer to this question is: Devonport") == "Devonport"
    assert clean_span("The answer is Devonport.") == "Devonport"
    assert clean_span("Final answer - Devonport") == "Devonport"
    assert clean_span("Answers vary by region") == "Answers vary by region"  # a word that starts with "answer"


def test_votes() -> None:
    assert majority_vote([3.0, 4.0, 4.0, None]) == 4.0
    assert majority_vote(["A", "B"]) == "B"  # tie: the later agent read more
    assert majority_vote([None, None]) is None
    assert span_consensus(["Denver Broncos", "Broncos", "Carolina Panthers"]) == "Broncos"
    ctx = "Denver Broncos beat the Carolina Panthers"
    assert span_consensus(["Carolina Panthers", "Denver Broncos"], ctx) == "Denver Broncos"
    assert span_consensus(["", "  "]) == ""


def test_extract_code_and_doctests() -> None:
    assert extract_code("x\n```python\ndef f():\n    return 1\n```\n```python\ndef g():\n    return 2\n```") == (
        "def g():\n    return 2"
    )
    assert extract_code("def f(x):\n    return x") == "def f(x):\n    return x"
    assert extract_code("I would use a loop.") is None
    prompt = 'def add(a, b):\n    """\n    >>> add(1, 2)\n    3\n    >>> add(0, 0)\n    0\n    """\n'
    assert doctest_asserts(prompt) == ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
