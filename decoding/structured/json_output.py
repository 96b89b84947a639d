"""OpenAI's `response_format` as something the local backends can enforce while decoding.

`json_output_spec` turns `{"type": "json_object"}` or `{"type": "json_schema", "json_schema": {...}}` into a
`JsonOutputSpec`: the exact llguidance grammar of the schema (`grammar_mask`), and, where the schema is a flat
object of plain values (the shape LangChain's `with_structured_output` and most extraction schemas send), the same
constraint as a Deco-G format (`decog_format`), so the HMM lookahead can steer the answer towards finishing the
format (Deng, Kung, Peng 2025, arXiv 2510.03595) instead of only masking. The Deco-G language is a subset of the
schema's: keys in the schema's order, every property present. Which one a request gets is decided against the
backend's vocabulary (`decoding.decog.guided.FormatGuide.resolve`).

Fail closed: a schema that is not valid JSON Schema, or uses a keyword llguidance cannot enforce, is a 400 that
names it (`FormatSpecError`), never unconstrained text. Answers are checked again with the `jsonschema` library
(`check_json_output`); its `pattern` runs on the `regex` engine with a timeout, since the schema is the client's.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
import llguidance
import regex

from prunekit.decoding.decog.errors import FormatSpecError

__all__ = [
    "ANY_OBJECT",
    "MAX_SCHEMA_CHARS",
    "JsonOutputSpec",
    "check_json_output",
    "check_schema",
    "decog_format",
    "json_output_spec",
    "schema_grammar",
]

MAX_SCHEMA_CHARS = 100_000  # far above real-world schemas (JSONSchemaBench's largest Kubernetes ones are ~60k)
MAX_SCHEMA_DEPTH = 40
PATTERN_TIMEOUT_S = 0.5  # for all of a schema's `pattern` checks on one answer together
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for json_schema.name
# Compact JSON: no whitespace between tokens. A small model given free whitespace can pad until the budget ends.
GRAMMAR_OPTIONS: dict[str, Any] = {"whitespace_flexible": False}
ANY_OBJECT: dict[str, Any] = {"type": "object"}
_ANNOTATIONS = frozenset(
    {"title", "description", "$schema", "$id", "$comment", "default", "examples", "readOnly", "writeOnly",
     "deprecated"}
)  # fmt: skip
_PLAIN_TYPES = frozenset({"string", "integer", "number", "boolean", "null"})


@dataclass(frozen=True)
class JsonOutputSpec:
    """What a `response_format` asks for: the JSON Schema every answer must validate against, the exact
    llguidance `grammar`, and `decog_format` (a `json:` format spec) when Deco-G can enforce the same schema."""

    kind: str  # "json_object" or "json_schema"
    name: str
    schema: dict[str, Any]
    strict: bool
    grammar: str
    decog_format: str | None


def json_output_spec(response_format: Mapping[str, Any] | None) -> JsonOutputSpec | None:
    """The spec of an OpenAI `response_format` (None for absent or `{"type": "text"}`)."""
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise FormatSpecError("response_format must be an object with a `type`")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return _spec("json_object", "json_object", ANY_OBJECT, strict=False)
    if kind != "json_schema":
        raise FormatSpecError(f"response_format.type must be text, json_object or json_schema, got {kind!r}")
    body = response_format.get("json_schema")
    if not isinstance(body, Mapping):
        raise FormatSpecError("response_format.json_schema must be an object with `name` and `schema`")
    name = body.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise FormatSpecError("response_format.json_schema.name must be 1-64 letters, digits, '_' or '-'")
    schema = body.get("schema", ANY_OBJECT)
    strict = body.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise FormatSpecError("response_format.json_schema.strict must be true or false")
    return _spec("json_schema", name, schema, strict=bool(strict))


def _spec(kind: str, name: str, schema: Any, *, strict: bool) -> JsonOutputSpec:
    check_schema(schema)
    return JsonOutputSpec(kind, name, schema, strict, schema_grammar(schema), decog_format(schema))


def schema_grammar(schema: dict[str, Any]) -> str:
    """The llguidance grammar of a (checked) schema, its objects closed (`closed_objects`), compact JSON."""
    return llguidance.LLMatcher.grammar_from_json_schema(closed_objects(schema), defaults=GRAMMAR_OPTIONS)


def closed_objects(schema: Any) -> Any:
    """A copy of `schema` where an object that lists `properties` and says nothing of others gets
    `additionalProperties: false`. Every answer of the copy is valid under the original; what changes is that a
    small model is not free to invent keys until its budget runs out (OpenAI's strict mode asks the same of
    clients)."""
    if isinstance(schema, list):
        return [closed_objects(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: closed_objects(value) for key, value in schema.items()}
    open_keys = {"additionalProperties", "patternProperties", "unevaluatedProperties"}
    if isinstance(schema.get("properties"), dict) and not open_keys & set(schema):
        out["additionalProperties"] = False
    return out


def check_schema(schema: Any) -> None:
    """Raise `FormatSpecError` unless `schema` is a valid JSON Schema within the size and depth limits."""
    if not isinstance(schema, dict):
        raise FormatSpecError(f"the JSON schema must be an object, got {type(schema).__name__}")
    if _depth(schema) > MAX_SCHEMA_DEPTH:  # first: the size check's json.dumps recurses
        raise FormatSpecError(f"the JSON schema nests deeper than {MAX_SCHEMA_DEPTH} levels")
    text = json.dumps(schema)
    if len(text) > MAX_SCHEMA_CHARS:
        raise FormatSpecError(f"the JSON schema has {len(text):,} characters; at most {MAX_SCHEMA_CHARS:,} are taken")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the top level"
        raise FormatSpecError(f"the JSON schema is not valid JSON Schema at {where}: {exc.message}") from None


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (a hostile schema must not exhaust the Python stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_SCHEMA_DEPTH:
            return depth
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def decog_format(schema: Any) -> str | None:
    """The schema as a Deco-G `json:` format when it is a flat object whose every property is a plain value
    (`string`, `integer`, `number`, `boolean`, `null`) or an enum of strings, with no other keyword that
    constrains; None otherwise (llguidance's mask enforces it)."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return None
    if set(schema) - _ANNOTATIONS - {"type", "properties", "required", "additionalProperties"}:
        return None
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        return None
    fields: dict[str, Any] = {}
    for key, sub in properties.items():
        value = _plain_value(sub)
        if value is None:
            return None
        fields[key] = value
    return "json:" + json.dumps(fields, ensure_ascii=False)


def _plain_value(sub: Any) -> Any:
    if not isinstance(sub, dict) or set(sub) - _ANNOTATIONS - {"type", "enum"}:
        return None
    kind = sub.get("type")
    if "enum" in sub:
        options = sub["enum"]
        plain = isinstance(options, list) and options and all(isinstance(o, str) and o for o in options)
        return list(options) if plain and kind in (None, "string") else None
    return kind if isinstance(kind, str) and kind in _PLAIN_TYPES else None


def check_json_output(schema: Any, text: str) -> str | None:
    """None when `text` is one JSON value valid under `schema`; otherwise what is wrong, in a sentence."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"the answer is not JSON: {exc.msg} at character {exc.pos}"
    try:
        validator = _bounded_validator(schema, time.monotonic() + PATTERN_TIMEOUT_S)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except TimeoutError:
        return "a `pattern` of the schema took too long to check"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "the top level"
    return f"the answer does not match the schema at {where}: {error.message}"


def _bounded_validator(schema: Any, deadline: float) -> Any:
    """The schema's validator with `pattern` on the `regex` engine, every match sharing one deadline (Python's `re`
    has no timeout, and an answer may hold many strings)."""

    def pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
        if not isinstance(instance, str):
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if regex.search(pattern, instance, timeout=left) is None:
            yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")

    base = jsonschema.validators.validator_for(schema)
    return jsonschema.validators.extend(base, {"pattern": pattern})(schema)
