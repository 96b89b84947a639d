"""response_format -> what the local backends enforce, and the independent check of answers."""

from __future__ import annotations

import json

import pytest

from prunekit.decoding.decog.errors import FormatSpecError
from prunekit.decoding.structured.json_output import (
    MAX_SCHEMA_DEPTH,
    check_json_output,
    closed_objects,
    decog_format,
    json_output_spec,
)

FLAT = {
    "type": "object",
    "title": "Person",
    "properties": {
        "name": {"type": "string", "description": "full name"},
        "age": {"type": "integer"},
        "mood": {"enum": ["glad", "sad"]},
    },
    "required": ["name", "age", "mood"],
}


def _schema_format(schema, **extra):
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, **extra}}


def test_text_and_absent_ask_for_nothing():
    assert json_output_spec(None) is None and json_output_spec({"type": "text"}) is None


def test_a_flat_object_of_plain_values_gets_a_decog_format():
    assert decog_format(FLAT) == 'json:{"name": "string", "age": "integer", "mood": ["glad", "sad"]}'


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}}},  # a bound Deco-G's spec lacks
        {"type": "object", "properties": {"a": {"type": "array"}}},
        {"type": "object", "properties": {"a": {"type": "integer"}}, "minProperties": 1},
        {"type": "array", "items": {"type": "string"}},
    ],
)
def test_anything_else_is_left_to_the_grammar(schema):
    assert decog_format(schema) is None
    assert json_output_spec(_schema_format(schema)).grammar


def test_json_object_is_any_object():
    spec = json_output_spec({"type": "json_object"})
    assert spec.kind == "json_object" and spec.schema == {"type": "object"} and spec.decog_format is None


@pytest.mark.parametrize(
    ("response_format", "message"),
    [
        ({"type": "xml"}, "response_format.type"),
        ({"type": "json_schema"}, "json_schema must be an object"),
        ({"type": "json_schema", "json_schema": {"name": "has space", "schema": {}}}, "name"),
        (_schema_format({"type": "strng"}), "not valid JSON Schema"),
        (_schema_format(["not", "an", "object"]), "must be an object"),
        (_schema_format({"type": "object"}, strict="yes"), "strict"),
    ],
)
def test_bad_response_formats_say_what_is_wrong(response_format, message):
    with pytest.raises(FormatSpecError, match=message):
        json_output_spec(response_format)


def test_deep_and_large_schemas_are_refused_before_any_work():
    deep: dict = {"type": "string"}
    for _ in range(MAX_SCHEMA_DEPTH + 5):
        deep = {"type": "array", "items": deep}
    with pytest.raises(FormatSpecError, match="deeper"):
        json_output_spec(_schema_format(deep))
    wide = {"type": "object", "properties": {f"k{i}": {"type": "string"} for i in range(20_000)}}
    with pytest.raises(FormatSpecError, match="characters"):
        json_output_spec(_schema_format(wide))


def test_closed_objects_only_narrow():
    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {}}}}}
    closed = closed_objects(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["a"]["additionalProperties"] is False
    open_one = {"type": "object", "properties": {"a": {}}, "additionalProperties": {"type": "integer"}}
    assert closed_objects(open_one) == open_one  # the schema already says what other keys may be
    assert "additionalProperties" not in schema  # a copy: the request's schema is untouched


def test_check_json_output():
    assert check_json_output(FLAT, json.dumps({"name": "Ann", "age": 3, "mood": "glad"})) is None
    assert "not JSON" in check_json_output(FLAT, '{"name": ')
    assert "age" in check_json_output(FLAT, json.dumps({"name": "Ann", "age": "3", "mood": "glad"}))


def test_a_schema_pattern_is_checked_on_a_bounded_engine():
    schema = {"type": "string", "pattern": "^(a+)+$"}
    assert check_json_output(schema, json.dumps("a" * 30)) is None
    assert check_json_output(schema, json.dumps("a" * 30 + "b")) is not None  # no catastrophic backtracking hang
