import pytest

from prunekit.eval.metrics.qa import exact_match, max_over_golds, normalize_answer, token_f1


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  a  cat ", "cat"),
        ("U.S.A.", "usa"),
        ("An apple and the pear", "apple and pear"),
    ],
)
def test_normalize(text, normal):
    assert normalize_answer(text) == normal


def test_exact_match_and_f1():
    assert exact_match("the Paris", "Paris") == 1.0
    assert token_f1("Paris France", "Paris") == pytest.approx(2 / 3)
    assert token_f1("London", "Paris") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "x") == 0.0


def test_max_over_golds():
    assert max_over_golds(token_f1, "in 1990", ["1990", "the year 1990"]) == pytest.approx(2 / 3)
    assert max_over_golds(exact_match, "x", []) == 0.0
