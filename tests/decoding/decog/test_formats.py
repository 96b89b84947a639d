"""Format specs: the string syntax, errors, and the automaton agreeing with Python's `re` on the same language."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.decoding.decog.errors import (
    EmptyFormatError,
    FormatSpecError,
    InvalidRegexError,
    UnsatisfiableFormatError,
)
from prunekit.decoding.decog.formats import (
    Choice,
    JsonObject,
    OneOf,
    Pivot,
    Regex,
    Sequence,
    Wildcard,
    compile_format,
    parse_format,
)
from prunekit.decoding.errors import InvalidRequestError


def test_pivot_syntax() -> None:
    fmt = parse_format("pivot:<free>The answer is <int>")
    assert fmt == Sequence((Wildcard(), Pivot("The answer is "), Regex(r"-?[0-9]+")))
    assert parse_format(r"pivot:a\<b\>c") == Pivot("a<b>c")
    assert parse_format("pivot:Verdict: <choice:yes|no>") == Sequence((Pivot("Verdict: "), Choice(("yes", "no"))))
    assert parse_format(r"pivot:<re:[a-z]{2}\>x>") == Regex("[a-z]{2}>x")
    assert parse_format("pivot:<free:5>!") == Sequence((Wildcard(max_chars=5), Pivot("!")))


def test_other_syntaxes() -> None:
    assert parse_format("regex:[0-9]+") == Regex("[0-9]+")
    assert parse_format(r"choice:a\|b|c") == Choice(("a|b", "c"))
    fmt = parse_format('json:{"answer": "string", "v": ["yes", "no"], "p": {"pattern": "[A-Z]+"}}')
    assert isinstance(fmt, JsonObject)
    assert [k for k, _ in fmt.fields] == ["answer", "v", "p"]


@pytest.mark.parametrize(
    ("spec", "error", "words"),
    [
        ("", EmptyFormatError, "empty"),
        ("   ", EmptyFormatError, "empty"),
        ("foo", FormatSpecError, "start it with"),
        ("regex:", EmptyFormatError, "no body"),
        ("regex:(a", InvalidRegexError, "invalid regex"),
        ("regex:^a", InvalidRegexError, "anchors"),
        ("regex:a(?=b)", InvalidRegexError, "look-around"),
        (r"regex:(a)\1", InvalidRegexError, "back-references"),
        (r"regex:[^\s\S]", UnsatisfiableFormatError, "no string"),
        ("regex:a{0}", EmptyFormatError, "empty output"),
        ("choice:a||b", EmptyFormatError, "non-empty"),
        ("json:[1]", FormatSpecError, "object"),
        ("json:{", FormatSpecError, "not valid JSON"),
        ("json:{}", EmptyFormatError, "at least one key"),
        ('json:{"a": "float"}', FormatSpecError, "value spec"),
        ('json:{"a": {"pattern": "(x"}}', InvalidRegexError, "invalid regex"),
        ("pivot:<bogus>", FormatSpecError, "unknown placeholder"),
        ("pivot:<free", FormatSpecError, "unclosed"),
        ("pivot:a>b", FormatSpecError, "unmatched"),
        ("pivot:<free:x>", FormatSpecError, "integer"),
        ("pivot:<free:1000>", FormatSpecError, "token budget"),
    ],
)
def test_bad_specs_raise_specific_request_errors(spec: str, error: type, words: str) -> None:
    with pytest.raises(error, match=words) as info:
        compile_format(spec)
    assert isinstance(info.value, InvalidRequestError)


def test_wildcard_stops_at_the_first_pivot() -> None:
    fmt = parse_format("pivot:<free>The answer is <int>")
    auto = compile_format(fmt)
    assert auto.accepts("Six times seven is 42. The answer is 42")
    assert auto.accepts("The answer is -7")
    assert not auto.accepts("The answer is 4. The answer is 5")  # the first occurrence ends the free text
    assert not auto.accepts("The answer is ")
    free = compile_format(Sequence((Wildcard(stop_at_pivot=False), Pivot("The answer is "), Regex("[0-9]+"))))
    assert free.accepts("The answer is 4, so The answer is 5")


def test_json_whitespace_and_escapes() -> None:
    auto = compile_format('json:{"answer": "string", "n": "integer", "ok": "boolean"}')
    assert auto.accepts('{"answer": "Pa\\"ris", "n": -12, "ok": true}')
    assert auto.accepts('{\n  "answer":"",\n  "n":0,"ok":false\n}')
    assert not auto.accepts('{"answer": "x", "n": 01, "ok": true}')  # no leading zeros in JSON
    assert not auto.accepts('{"n": 1, "answer": "x", "ok": true}')  # keys in the given order
    assert not auto.accepts('{"answer": "a\nb", "n": 1, "ok": true}')  # raw newline inside a string
    enum = compile_format('json:{"verdict": ["correct", "incorrect"]}')
    assert enum.accepts('{"verdict": "incorrect"}') and not enum.accepts('{"verdict": "maybe"}')


def test_json_keys_and_choices_outside_ascii_are_matched_as_written() -> None:
    spec = 'json:{"città": ["Zürich", "Genève"]}'
    auto = compile_format(spec)
    assert auto.accepts('{"città": "Zürich"}') and not auto.accepts('{"citt\\u00e0": "Z\\u00fcrich"}')
    assert re.fullmatch(parse_format(spec).python_regex(), '{"città": "Genève"}')


def test_one_of_is_a_trie_of_branches() -> None:
    fmt = OneOf((Sequence((Pivot("The answer is "), Regex("[0-9]+"))), Pivot("I don't know")))
    auto = compile_format(fmt)
    assert auto.accepts("The answer is 3") and auto.accepts("I don't know") and not auto.accepts("The answer")


# Random strings over a small alphabet (non-ASCII digit, space and letter included): the automaton (interegular + our
# trimming) and Python's `re` agree.
_FORMATS = [
    "pivot:<free>ab<int>",
    "pivot:<free:3>b<choice:1|a2>",
    "pivot:a<free>a",
    "pivot:<free>aa<free>b",
    "choice:ab|a|b a",
    "regex:(ab|1)+2?",
    'json:{"a": "integer", "b": ["x", "y"]}',
    'json:{"a": {"pattern": "[ab]*"}}',
    r"regex:\d+\s?\w*[^\d]?",
]


@pytest.mark.parametrize("spec", _FORMATS)
@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet='ab12 x"{}:,-٣\xa0é', max_size=14))
def test_automaton_agrees_with_python_re(spec: str, text: str) -> None:
    fmt = parse_format(spec)
    assert compile_format(fmt).accepts(text) == fmt.matches(text)


@pytest.mark.parametrize(
    ("spec", "text"),
    [(r"regex:\d", "٣"), (r"regex:\w", "é"), (r"regex:\s", "\xa0"), (r"regex:\D", "5"), (r"regex:[^\d]", "7")],
)
def test_class_escapes_are_ascii_in_both_readings(spec: str, text: str) -> None:
    fmt = parse_format(spec)
    assert not fmt.matches(text) and not compile_format(fmt).accepts(text)


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("pivot:<free>ab<int>", "xx ab12"),
        ("pivot:<free:3>b<choice:1|a2>", "aab1"),
        ("pivot:a<free>a", "a a"),
        ("pivot:<free>aa<free>b", "x aa b"),
        ('json:{"a": "integer", "b": ["x", "y"]}', '{"a": 12, "b": "y"}'),
    ],
)
def test_agreement_also_on_accepted_strings(spec: str, text: str) -> None:
    fmt = parse_format(spec)
    assert fmt.matches(text) and compile_format(fmt).accepts(text)
