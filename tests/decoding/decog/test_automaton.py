"""The UTF-8 byte automaton accepts exactly the encodings of the strings the character automaton accepts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.decoding.decog.formats import compile_format

_SPECS = ["regex:[a-c]+é中", "pivot:<free>é<int>", "choice:naïve|café|😀!", "pivot:<free:4>x", "regex:[^a]b"]
_ALPHABET = "abcx1é中ïeà😀!"


@pytest.mark.parametrize("spec", _SPECS)
@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=_ALPHABET, max_size=8))
def test_bytes_accept_exactly_the_encodings(spec: str, text: str) -> None:
    char = compile_format(spec)
    assert char.to_bytes().accepts(text.encode("utf-8")) == char.accepts(text)


@pytest.mark.parametrize("spec", _SPECS)
@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=6))  # any Unicode, far outside the named alphabet
def test_anything_else_characters(spec: str, text: str) -> None:
    char = compile_format(spec)
    assert char.to_bytes().accepts(text.encode("utf-8")) == char.accepts(text)


def test_known_accepts() -> None:
    byte = compile_format("choice:naïve|café|😀!").to_bytes()
    for word in ["naïve", "café", "😀!"]:
        assert byte.accepts(word.encode())
    assert not byte.accepts(b"cafe")
    assert not byte.accepts("café".encode()[:-1])  # half a character is not a complete output


@pytest.mark.parametrize(
    "bad",
    [b"\xc0\x80", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff", b"\x80", b"\xc3"],
)
def test_invalid_utf8_never_accepted_in_free_text(bad: bytes) -> None:
    byte = compile_format("pivot:<free>!").to_bytes()
    assert byte.accepts(b"ok!")
    assert not byte.accepts(b"ok" + bad + b"!")


def test_every_live_state_can_finish() -> None:
    byte = compile_format("pivot:<free>é<int>").to_bytes()
    table = byte.table
    # Trimmed: every transition points at a state that has a way to acceptance (a row with a move, or accepting).
    targets = table[table >= 0]
    assert all(byte.accepting[t] or (table[t] >= 0).any() for t in set(targets.tolist()))


@pytest.mark.parametrize(
    ("spec", "where", "expected"),
    [
        ('json:{"verdict": ["correct", "incorrect"]}', '{"verdict": "', True),  # the options ahead
        ('json:{"verdict": ["correct", "incorrect"]}', '{"', False),  # the key: one fixed string, no branch
        ('json:{"verdict": ["correct", "incorrect"]}', '{"verdict": "inc', False),  # committed: "orrect" is forced
        ('json:{"verdict": ["correct", "incorrect"]}', "", False),  # JSON whitespace may come first: a loop
        ('json:{"answer": "string"}', '{"answer": "', False),  # free string content
        ("pivot:<free>The answer is <int>", "so The answer is ", True),  # sign or digit
        ("pivot:<free>The answer is <int>", "so The answer is 4", False),  # more digits or the end: a loop
        ("pivot:<free>The answer is <int>", "so The", False),  # still free text
        ("choice:yes|yesterday", "", True),  # a stretch with a branch further on counts from its start
        ("choice:yes|yesterday", "yes", True),  # end here or go on
        ("choice:yes|yesterday", "yest", False),
        ("regex:a+b?", "", False),  # one way on, into a loop
        ("regex:[A-D]", "", True),
        ("pivot:<free:5>x", "", False),  # a bounded wildcard: loop-free, but free text
        ("pivot:<free:5>x", "abcd", False),  # still more than 256 ways through
    ],
)
def test_choice_points(spec: str, where: str, expected: bool) -> None:
    automaton = compile_format(spec).to_bytes()
    state = automaton.walk(where.encode())
    assert state >= 0
    assert bool(automaton.choice_points()[state]) is expected
