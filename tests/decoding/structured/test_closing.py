"""The way to close a grammar from mid-answer, on the embedded model's vocabulary."""

from __future__ import annotations

import json

import jsonschema
import llguidance

from prunekit.decoding.structured.closing import (
    IN_STRING,
    OUTSIDE,
    LexState,
    closing_tokens,
    lengtheners,
    token_moves,
)
from prunekit.decoding.structured.grammar_mask import LIMITS, grammar_tokenizer
from prunekit.decoding.structured.json_output import json_output_spec

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "author": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "born": {"type": "integer"}},
            "required": ["name", "born"],
        },
        "tags": {"type": "array", "items": {"type": "string", "minLength": 2}, "minItems": 1},
        "kind": {"enum": ["novel", "essay"]},
    },
    "required": ["title", "author", "tags", "kind"],
}


def _matcher(vocab, schema=SCHEMA):
    grammar = json_output_spec({"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}).grammar
    return llguidance.LLMatcher(grammar_tokenizer(vocab), grammar, limits=LIMITS, log_level=0)


def _spell(vocab, tokens):
    return b"".join(vocab.token_bytes[t] for t in tokens).decode()


def test_lexical_state_follows_strings_escapes_and_nesting():
    assert LexState().after(b'{"a":["x') == LexState(IN_STRING, 2)
    assert LexState().after(b'{"a":"\\"}') == LexState(IN_STRING, 1)  # an escaped quote does not close
    assert LexState().after(b'{"a":"}]"}') == LexState(OUTSIDE, 0)  # brackets in a string do not count


def test_moves_of_a_token_depend_on_where_it_starts(embedded_model):
    vocab = embedded_model.vocabulary()
    moves = token_moves(vocab)
    quote_brace = embedded_model.tokenize('"}', special=False)
    assert len(quote_brace) == 1
    (token,) = quote_brace
    assert (moves.end[OUTSIDE, token], moves.depth[OUTSIDE, token]) == (IN_STRING, 0)  # opens a string
    assert (moves.end[IN_STRING, token], moves.depth[IN_STRING, token]) == (OUTSIDE, -1)  # closes it and an object


def test_the_way_closes_from_deep_inside_a_string(embedded_model):
    vocab = embedded_model.vocabulary()
    matcher = _matcher(vocab)
    text = '{"title":"A very long title that goes on and on'
    prefix = embedded_model.tokenize(text, special=False)
    assert matcher.consume_tokens(prefix)
    way = closing_tokens(matcher, token_moves(vocab), LexState().after(text.encode()), limit=64)
    assert way is not None and len(way) < 40
    assert not matcher.is_accepting()  # the matcher it was given is untouched
    answer = json.loads(_spell(vocab, prefix + way))
    jsonschema.validate(answer, SCHEMA)  # every required member, the array's minItems and minLength kept
    assert answer["title"] == "A very long title that goes on and on"


def test_no_way_within_the_limit_is_none(embedded_model):
    vocab = embedded_model.vocabulary()
    moves = token_moves(vocab)
    assert closing_tokens(_matcher(vocab), moves, LexState(), limit=3) is None
    way = closing_tokens(_matcher(vocab), moves, LexState(), limit=200)
    assert way is not None
    jsonschema.validate(json.loads(_spell(vocab, way)), SCHEMA)


def test_a_number_is_ended_not_lengthened(embedded_model):
    """`0` is a plain value: a walk that preferred it after a digit would write `1000...` until its limit."""
    vocab = embedded_model.vocabulary()
    schema = {"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "integer"}, "minItems": 3}},
              "required": ["xs"]}  # fmt: skip
    matcher = _matcher(vocab, schema)
    text = '{"xs":[1'
    prefix = embedded_model.tokenize(text, special=False)
    assert matcher.consume_tokens(prefix)
    way = closing_tokens(matcher, token_moves(vocab), LexState().after(text.encode()), limit=16)
    assert way is not None
    answer = json.loads(_spell(vocab, prefix + way))
    jsonschema.validate(answer, schema)
    assert answer["xs"][0] == 1


def test_lengtheners_open_structures_or_add_elements_outside_strings(embedded_model):
    vocab = embedded_model.vocabulary()
    moves = token_moves(vocab)
    (comma,) = embedded_model.tokenize(",", special=False)
    (brace,) = embedded_model.tokenize("{", special=False)
    (digit,) = embedded_model.tokenize("7", special=False)
    outside, in_string = lengtheners(moves, LexState()), lengtheners(moves, LexState(IN_STRING, 1))
    assert outside[comma] and outside[brace] and not outside[digit]
    assert not in_string[comma] and not in_string[brace]  # text inside a string value
