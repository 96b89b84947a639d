"""What pruning never drops: the question's exact strings and a request's keep patterns, bounded."""

from __future__ import annotations

import time

import pytest

from prunekit.app.proxy.keep import MAX_KEEP_PATTERNS, KeepRules, KeepTimeoutError, question_terms
from prunekit.decoding.errors import InvalidRequestError


def test_question_terms_are_quotes_numbers_and_ids():
    terms = question_terms("Did 'Blue Moon' ship order ORD-77 or SKU_X in 1999, at $5? Pekar's book?")
    assert terms == ["Blue Moon", "ORD-77", "1999", "$5", "SKU_X"]


def test_protected_spans_find_terms_case_insensitively_and_patterns():
    rules = KeepRules(("ord-77",), KeepRules.compile([r"\bINV\d+"]))
    spans = rules.protected_spans("Order ORD-77 is late. Invoice INV42 paid.", time.monotonic() + 1)
    assert sorted(spans) == [(6, 12), (30, 35)]


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (["("], "not a valid regular expression"),
        (["x" * 300], "characters"),
        ([""], "non-empty"),
        (["a"] * (MAX_KEEP_PATTERNS + 1), "limit"),
    ],
)
def test_bad_patterns_are_400s_that_say_why(patterns, message):
    with pytest.raises(InvalidRequestError, match=message):
        KeepRules.compile(patterns)


def test_a_backtracking_pattern_stops_at_its_budget():
    rules = KeepRules((), KeepRules.compile([r"(a|aa)+$"]))
    started = time.perf_counter()
    with pytest.raises(KeepTimeoutError):
        rules.protected_spans("a" * 60 + "b", time.monotonic() + 0.1)
    assert time.perf_counter() - started < 5.0  # the budget is checked coarsely; a loaded CI machine adds more
