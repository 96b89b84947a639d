import pytest

from prunekit.decoding.backends.stops import StopMatcher


def run(stops, pieces):
    matcher = StopMatcher(stops)
    shown = "".join(matcher.feed(p) for p in pieces) + matcher.flush()
    return shown, matcher.stopped


@pytest.mark.parametrize(
    ("stops", "pieces", "shown", "stopped"),
    [
        ([], ["a", "b"], "ab", False),
        (["END"], ["abc", "EN", "D tail"], "abc", True),
        (["END"], ["abc", "EN", "X"], "abcENX", False),  # a false start is released
        (["\n\n", "Q:"], ["one\n", "\ntwo"], "one", True),
        (["Q:"], ["xQ", ":"], "x", True),
        (["stop"], ["no sto"], "no sto", False),  # held back, then flushed at the end
        (["ab", "b"], ["xab"], "x", True),  # the earliest match wins
    ],
)
def test_stop_matcher(stops, pieces, shown, stopped):
    assert run(stops, pieces) == (shown, stopped)


def test_nothing_is_shown_after_a_stop():
    matcher = StopMatcher(["."])
    assert matcher.feed("Hi. more") == "Hi"
    assert matcher.feed("again") == ""
    assert matcher.flush() == ""
