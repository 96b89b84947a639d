r"""Output formats for guided decoding, and their compilation to a character-level automaton.

Deco-G (Deng, Kung, Peng 2025, arXiv 2510.03595) describes a format as a trie of fixed "pivot" strings and free
"wildcard" spans, e.g. free reasoning, then `The answer is `, then a number; Ctrl-G (joshuacnf/Ctrl-G) compiles
such constraints to DFAs. Here every format becomes one regular language, built with `interegular` FSM
operations (concatenation, union, difference) and trimmed into a `CharAutomaton`:

- `Sequence(parts)`: the parts one after the other. Parts: `Pivot(text)` (a fixed string), `Wildcard(...)` (free
  text), `Regex(pattern)`, `Choice(options)`, or any other format. A wildcard directly followed by a pivot stops at
  the pivot's FIRST occurrence (`stop_at_pivot=True`): the free text never contains the pivot, so the pivot
  (and what follows it) is unambiguous to parse.
- `OneOf(alternatives)`: Deco-G's trie branches (the minimised DFA shares common prefixes).
- `Regex(pattern)`: a Python-style regular expression matched in full (no anchors, look-arounds, back-references);
  `\d`, `\w` and `\s` are the ASCII classes (as with `re.ASCII`), so `\d` is `[0-9]`.
- `Choice(options)`: exactly one of the strings.
- `JsonObject(fields)`: a flat JSON object with the given keys in the given order; values `"string"`,
  `"integer"`, `"number"`, `"boolean"`, `"null"`, an enum (list of strings) or `{"pattern": regex}` (a string
  whose raw JSON content matches the regex); optional JSON whitespace around every token.

Every spec is checked against static size limits while it is parsed (`limits.py`): parsing never builds an
automaton, so a format bomb (`regex:a{50000}`) is refused in well under a millisecond. The automaton itself is
built by `compile_format`, which the service runs in a child process under a deadline (`bounded.py`).

The output must match the format completely and then end (EOS). The length budget is in tokens and belongs to
the guidance processor (`max_new_tokens`), not to the format; `Wildcard(max_chars=N)` bounds a span in
characters (small N only: it multiplies automaton states).

String syntax (for the CLI and the HTTP API), `parse_format(spec)`:

    regex:<pattern>                 regex:-?\d+
    choice:<a>|<b>|...              choice:yes|no|maybe        (`\|` is a literal bar, `\\` a backslash)
    json:<object>                   json:{"answer": "string", "verdict": ["correct", "incorrect"], "n": "integer"}
    pivot:<text with placeholders>  pivot:<free>The answer is <int>

Placeholders in `pivot:` (everything else is literal pivot text; `\<`, `\>` and `\\` escape):
`<free>` free text (stops at the next pivot), `<free:N>` at most N characters, `<int>` `-?\d+`,
`<number>` a decimal number, `<word>` letters, `<line>` text without a newline, `<choice:a|b>` one of the options,
`<re:PATTERN>` a regex (write `\>` for `>` inside).

>>> fmt = parse_format("pivot:<free>The answer is <int>")
>>> compile_format(fmt).accepts("So 6 * 7 = 42. The answer is 42")
True
"""

from __future__ import annotations

import functools
import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prunekit.decoding.decog.automaton import CharAutomaton
from prunekit.decoding.decog.errors import (
    EmptyFormatError,
    FormatSpecError,
    FormatTooLargeError,
    InvalidRegexError,
    UnsatisfiableFormatError,
)
from prunekit.decoding.decog.limits import (
    MAX_SPEC_CHARS,
    check_json_schema,
    check_literal,
    check_options,
    check_regex,
    check_spec_size,
    estimate_regex,
)

__all__ = [
    "Choice",
    "Format",
    "JsonObject",
    "OneOf",
    "Pivot",
    "Regex",
    "Sequence",
    "Wildcard",
    "check_format",
    "compile_format",
    "parse_format",
]

log = logging.getLogger(__name__)

MAX_WILDCARD_CHARS = 64  # beyond this a bounded wildcard's states swamp the token tables: use the token budget
_ANY = r"[\s\S]"  # any character, newline included (interegular's `.` excludes "\n", as Python's does)
_JSON_WS = r"[ \t\n\r]*"
_JSON_STRING_CONTENT = r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*'
_JSON_VALUE_PATTERNS = {
    "string": '"' + _JSON_STRING_CONTENT + '"',
    "integer": r"-?(?:0|[1-9][0-9]*)",
    "number": r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?",
    "boolean": r"(?:true|false)",
    "null": r"null",
}
_PLACEHOLDER_REGEX = {
    "int": r"-?[0-9]+",
    "number": r"-?[0-9]+(?:\.[0-9]+)?",
    "word": r"[A-Za-z]+",
    "line": r"[^\n]*",
}


# --------------------------------------------------------------------------- format nodes
class Format(ABC):
    """A format: a regular language the whole output must belong to."""

    @abstractmethod
    def fsm(self) -> Any:
        """The language as an `interegular.fsm.FSM`."""

    @abstractmethod
    def python_regex(self) -> str:
        """An equivalent Python `re` pattern (for `re.fullmatch` with `re.ASCII`): an independent check of outputs
        and tests."""

    @property
    def key(self) -> str:
        """A canonical string identifying the format (cache key)."""
        return repr(self)

    def matches(self, text: str) -> bool:
        """Does `text` satisfy the format (checked with Python's `re`)?"""
        # re.ASCII: `\d`, `\w` and `\s` are ASCII classes in the automaton (interegular's reading) too
        return re.fullmatch(self.python_regex(), text, re.ASCII) is not None


@dataclass(frozen=True)
class Regex(Format):
    """A regular expression the output must match in full, e.g. `Regex(r"-?\\d+")`."""

    pattern: str

    def __post_init__(self) -> None:
        if not self.pattern:
            raise EmptyFormatError("the regex is empty: give a pattern, e.g. `regex:[0-9]+`")
        _check_pattern(self.pattern)  # fail early, with the pattern in the message, without building anything

    def fsm(self) -> Any:
        return _pattern_fsm(self.pattern)

    def python_regex(self) -> str:
        return f"(?:{self.pattern})"


@dataclass(frozen=True)
class Pivot(Format):
    """A fixed string (Deco-G's pivot), e.g. `Pivot("The answer is ")`."""

    text: str

    def __post_init__(self) -> None:
        if not self.text:
            raise EmptyFormatError("a pivot is an empty string: give its text, or drop it")
        check_literal(self.text, f"the pivot text {_show(self.text)}")

    def fsm(self) -> Any:
        return _pattern_fsm(_literal(self.text))

    def python_regex(self) -> str:
        return re.escape(self.text)


@dataclass(frozen=True)
class Choice(Format):
    """Exactly one of `options`, e.g. `Choice(("yes", "no"))`."""

    options: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))
        if not self.options:
            raise EmptyFormatError("a choice needs at least one option, e.g. `choice:yes|no`")
        if any(not isinstance(o, str) or not o for o in self.options):
            raise EmptyFormatError(f"choice options must be non-empty strings, got {list(self.options)!r}")
        check_options(self.options, "the choice")

    def fsm(self) -> Any:
        return _pattern_fsm("|".join(_literal(o) for o in self.options))

    def python_regex(self) -> str:
        return "(?:" + "|".join(re.escape(o) for o in self.options) + ")"


@dataclass(frozen=True)
class Wildcard(Format):
    """Free text (Deco-G's wildcard). `max_chars` bounds it (<= 64); before a pivot it stops at the pivot."""

    max_chars: int | None = None
    stop_at_pivot: bool = True

    def __post_init__(self) -> None:
        if self.max_chars is not None and not 1 <= self.max_chars <= MAX_WILDCARD_CHARS:
            raise FormatSpecError(
                f"wildcard max_chars must be in [1, {MAX_WILDCARD_CHARS}], got {self.max_chars}: "
                "bound long free text with the token budget (max_tokens) instead"
            )

    def _body(self) -> str:
        return _ANY + ("*" if self.max_chars is None else f"{{0,{self.max_chars}}}")

    def fsm(self) -> Any:
        return _any_fsm(0, self.max_chars)

    def python_regex(self) -> str:
        return f"(?:{self._body()})"

    def before_pivot_fsm(self, pivot: Pivot) -> Any:
        """Free text then `pivot`, where the pivot's first occurrence is the one that ends the wildcard."""
        ends_with = _concat(self.fsm(), pivot.fsm())
        # Strings in which the pivot occurs and something follows it: the pivot came too early.
        too_early = _concat(_any_fsm(0, None), pivot.fsm(), _any_fsm(1, None))
        return ends_with.difference(too_early)

    def before_pivot_python_regex(self, pivot: Pivot) -> str:
        # Tempered token: no position of the free text starts the pivot (overlaps into the pivot included).
        quant = "*" if self.max_chars is None else f"{{0,{self.max_chars}}}"
        return f"(?:(?!{pivot.python_regex()}){_ANY}){quant}{pivot.python_regex()}"


@dataclass(frozen=True)
class Sequence(Format):
    """Parts one after the other, e.g. `Sequence((Wildcard(), Pivot("The answer is "), Regex(r"-?\\d+")))`."""

    parts: tuple[Format, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.parts))
        if not self.parts:
            raise EmptyFormatError("a sequence format needs at least one part")

    def _chunks(self) -> list[Format | tuple[Wildcard, Pivot]]:
        """Pair each stopping wildcard with the pivot it stops at; every other part stands alone."""
        out: list[Format | tuple[Wildcard, Pivot]] = []
        i = 0
        while i < len(self.parts):
            part = self.parts[i]
            nxt = self.parts[i + 1] if i + 1 < len(self.parts) else None
            if isinstance(part, Wildcard) and part.stop_at_pivot and isinstance(nxt, Pivot):
                out.append((part, nxt))
                i += 2
            else:
                out.append(part)
                i += 1
        return out

    def fsm(self) -> Any:
        return _concat(*(c[0].before_pivot_fsm(c[1]) if isinstance(c, tuple) else c.fsm() for c in self._chunks()))

    def python_regex(self) -> str:
        pieces = [
            c[0].before_pivot_python_regex(c[1]) if isinstance(c, tuple) else c.python_regex() for c in self._chunks()
        ]
        return "(?:" + "".join(pieces) + ")"


@dataclass(frozen=True)
class OneOf(Format):
    """Any one of several formats (the branches of Deco-G's trie)."""

    alternatives: tuple[Format, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "alternatives", tuple(self.alternatives))
        if not self.alternatives:
            raise EmptyFormatError("a one-of format needs at least one alternative")

    def fsm(self) -> Any:
        first, *rest = (a.fsm() for a in self.alternatives)
        return first.union(*rest) if rest else first

    def python_regex(self) -> str:
        return "(?:" + "|".join(a.python_regex() for a in self.alternatives) + ")"


@dataclass(frozen=True)
class JsonObject(Format):
    """A flat JSON object: `fields` is ((key, value spec), ...) in output order; see the module docstring."""

    fields: tuple[tuple[str, Any], ...]

    def __post_init__(self) -> None:
        fields = self.fields.items() if isinstance(self.fields, dict) else self.fields
        # Freeze nested lists/dicts so the format stays hashable and its repr stays a stable cache key.
        frozen = tuple((k, _freeze(v)) for k, v in fields)
        object.__setattr__(self, "fields", frozen)
        if not frozen:
            raise EmptyFormatError('a JSON format needs at least one key, e.g. `json:{"answer": "string"}`')
        keys = [k for k, _ in frozen]
        if any(not isinstance(k, str) or not k for k in keys):
            raise EmptyFormatError(f"JSON keys must be non-empty strings, got {keys!r}")
        for key in keys:
            check_literal(key, f"the JSON key {_show(key)}")
        if len(set(keys)) != len(keys):
            raise FormatSpecError(f"JSON keys must be distinct, got {keys!r}")
        for key, spec in frozen:
            _json_value_pattern(key, spec)  # validates

    def _object_pattern(self, quote: Callable[[str], str]) -> str:
        # keys as written in UTF-8, not as \\uXXXX escapes: what a model writes (and valid JSON either way)
        ws = _JSON_WS
        members = [
            f"{quote(json.dumps(k, ensure_ascii=False))}{ws}:{ws}{_json_value_pattern(k, v)}" for k, v in self.fields
        ]
        return r"\{" + ws + f"{ws},{ws}".join(members) + ws + r"\}"

    def python_regex(self) -> str:
        return self._object_pattern(re.escape)

    def fsm(self) -> Any:
        return _pattern_fsm(self._object_pattern(_literal))


# --------------------------------------------------------------------------- compilation
def check_format(fmt: Format, spec: str | None = None) -> None:
    """Refuse a format whose automaton would be too large, without building it (`limits.estimate_regex` on its
    Python regex: it sees a regex after free text too, as in `pivot:<free><re:x[xy]{24}>`). `spec` names it."""
    estimate_regex(fmt.python_regex(), f"the format {_show(spec or fmt.key)}")


@functools.lru_cache(maxsize=64)
def _compile_cached(fmt: Format) -> CharAutomaton:
    fsm = fmt.fsm().reduce()
    automaton = CharAutomaton.from_fsm(fsm)
    if automaton.is_empty:
        raise UnsatisfiableFormatError(f"no string satisfies the format {fmt.key}: relax it")
    if automaton.accepting == {automaton.initial} and all(
        not t and d is None for t, d in zip(automaton.transitions, automaton.default, strict=True)
    ):
        raise EmptyFormatError(f"the format {fmt.key} only allows an empty output: give it some content")
    log.debug("format %s: %d char states", fmt.key, automaton.num_states)
    return automaton


def compile_format(fmt: Format | str) -> CharAutomaton:
    """The trimmed character-level DFA of a format (cached). Raises a `FormatSpecError` for a bad format.

    In-process and unbounded in time: for trusted formats (tests, the CLI, evaluations). The service compiles
    through `decoding.decog.bounded`, which runs this in a child process under a deadline.
    """
    return _compile_cached(parse_format(fmt) if isinstance(fmt, str) else fmt)


# --------------------------------------------------------------------------- string syntax
def parse_format(spec: str | Format) -> Format:
    """Parse the string syntax of the module docstring (`regex:`, `choice:`, `json:`, `pivot:`), within the static
    limits of `limits.py` (a `FormatTooLargeError` past one). Linear in the spec's length; builds no automaton."""
    if isinstance(spec, Format):
        return spec
    if not isinstance(spec, str):
        raise EmptyFormatError("the format is empty: use e.g. `pivot:<free>The answer is <int>` or `choice:yes|no`")
    return _parse_spec(spec)


@functools.lru_cache(maxsize=256)
def _parse_spec(spec: str) -> Format:
    """`parse_format` of a string, cached: clients repeat their formats (a refusal is not cached here)."""
    if not spec.strip():
        raise EmptyFormatError("the format is empty: use e.g. `pivot:<free>The answer is <int>` or `choice:yes|no`")
    kind, sep, body = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in _PARSERS:
        raise FormatSpecError(
            f"unknown format {spec[:40]!r}: start it with one of {', '.join(k + ':' for k in _PARSERS)} "
            "(e.g. `choice:yes|no`)"
        )
    if not body:
        raise EmptyFormatError(f"the {kind}: format has no body: write it after `{kind}:`")
    if kind != "json":  # a json: body is first read for what makes it big (properties, enums), then measured
        check_spec_size(spec)
    fmt = _PARSERS[kind](body)
    check_format(fmt, spec)
    return fmt


def _parse_regex(body: str) -> Format:
    return Regex(body)


def _parse_choice(body: str) -> Format:
    return Choice(tuple(_split_unescaped(body, "|")))


def _parse_json(body: str) -> Format:
    if len(body) > 256 * MAX_SPEC_CHARS:  # 4 MiB, four times the service's body limit: not even worth reading
        check_spec_size(body, "the json: format")
    try:
        obj = json.loads(body)  # C, linear; nesting past Python's recursion limit is a RecursionError
    except json.JSONDecodeError as e:
        raise FormatSpecError(
            f'json: format body is not valid JSON ({e.msg}): write e.g. {{"answer": "string"}}'
        ) from e
    except RecursionError as e:
        raise FormatTooLargeError(
            'the json: format nests too deeply: it is a flat object of key -> type, e.g. {"answer": "string"}'
        ) from e
    if not isinstance(obj, dict):
        raise FormatSpecError('json: format body must be an object of key -> value type, e.g. {"answer": "string"}')
    check_json_schema(obj)
    check_spec_size(body, "the json: format")
    return JsonObject(tuple(obj.items()))


def _parse_pivot(body: str) -> Format:
    parts: list[Format] = []
    literal: list[str] = []
    i = 0

    def flush() -> None:
        if literal:
            parts.append(Pivot("".join(literal)))
            literal.clear()

    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            literal.append(body[i + 1])
            i += 2
            continue
        if ch == ">":
            raise FormatSpecError(f"unmatched `>` at position {i} of the pivot format: escape it as `\\>`")
        if ch != "<":
            literal.append(ch)
            i += 1
            continue
        end, content = _read_placeholder(body, i)
        flush()
        parts.append(_placeholder(content))
        i = end + 1
    flush()
    if not parts:
        raise EmptyFormatError("the pivot: format is empty")
    return parts[0] if len(parts) == 1 else Sequence(tuple(parts))


def _read_placeholder(body: str, start: int) -> tuple[int, str]:
    """The placeholder starting at `body[start] == "<"`: (index of its `>`, its content with escapes undone)."""
    out: list[str] = []
    i = start + 1
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] in "<>":
            out.append(body[i + 1])
            i += 2
            continue
        if ch == ">":
            return i, "".join(out)
        out.append(ch)
        i += 1
    raise FormatSpecError(f"unclosed `<` at position {start} of the pivot format: close the placeholder with `>`")


def _placeholder(content: str) -> Format:
    name, sep, arg = content.partition(":")
    name = name.strip().lower()
    if name in ("free", "text") and not sep:
        return Wildcard()
    if name == "free" and sep:
        if not arg.strip().isdigit():
            raise FormatSpecError(f"<free:{arg}>: the bound must be an integer number of characters")
        return Wildcard(max_chars=int(arg))
    if name in _PLACEHOLDER_REGEX and not sep:
        return Regex(_PLACEHOLDER_REGEX[name])
    if name == "choice" and sep:
        return Choice(tuple(_split_unescaped(arg, "|")))
    if name == "re" and sep:
        return Regex(arg)
    known = "<free>, <free:N>, <int>, <number>, <word>, <line>, <choice:a|b>, <re:PATTERN>"
    raise FormatSpecError(f"unknown placeholder <{content}>: use one of {known} (escape a literal `<` as `\\<`)")


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, cur, i = [], [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
        elif text[i] == sep:
            out.append("".join(cur))
            cur = []
            i += 1
        else:
            cur.append(text[i])
            i += 1
    out.append("".join(cur))
    return out


_PARSERS = {"regex": _parse_regex, "choice": _parse_choice, "json": _parse_json, "pivot": _parse_pivot}


# --------------------------------------------------------------------------- helpers
def _literal(text: str) -> str:
    """A regex matching `text` literally, in the dialect interegular parses."""
    return "".join("\\" + ch if ch in r"\.^$*+?{}[]|()-/" else _escape_control(ch) for ch in text)


def _escape_control(ch: str) -> str:
    if ch == "\n":
        return r"\n"
    if ch == "\t":
        return r"\t"
    if ch == "\r":
        return r"\r"
    return ch


@functools.lru_cache(maxsize=256)
def _check_pattern(pattern: str, what: str | None = None) -> None:
    """Validate a regex without building its automaton: the size limits, Python's parser and interegular's."""
    import interegular

    check_regex(pattern, what)
    try:
        re.compile(pattern)
    except re.error as e:
        raise InvalidRegexError(f"invalid regex {pattern!r}: {e}") from e
    try:
        lookaround = interegular.parse_pattern(pattern).prefix_postfix != (0, 0)
    except Exception as e:  # interegular raises Unsupported, InvalidSyntax and assorted internal errors
        raise InvalidRegexError(
            f"regex {pattern!r} cannot become a finite automaton ({type(e).__name__}: {e}): "
            "avoid anchors (^ $), \\b, back-references and look-arounds"
        ) from e
    if lookaround:
        raise InvalidRegexError(f"regex {pattern!r} uses a look-around: rewrite it without (?=, (?!, (?<= or (?<!")


@functools.lru_cache(maxsize=256)
def _pattern_fsm(pattern: str) -> Any:
    """Parse a regex with interegular and build its FSM (the costly step: `_check_pattern` vets it first); any
    failure becomes an InvalidRegexError naming the pattern."""
    import interegular

    try:
        re.compile(pattern)
    except re.error as e:
        raise InvalidRegexError(f"invalid regex {pattern!r}: {e}") from e
    try:
        parsed = interegular.parse_pattern(pattern)
        if parsed.prefix_postfix != (0, 0):
            raise InvalidRegexError(f"regex {pattern!r} uses a look-around: rewrite it without (?=, (?!, (?<= or (?<!")
        return parsed.to_fsm()
    except (InvalidRegexError, MemoryError, RecursionError):  # out of memory is the compile budget's verdict
        raise
    except Exception as e:  # interegular raises Unsupported, InvalidSyntax and assorted internal errors
        raise InvalidRegexError(
            f"regex {pattern!r} cannot become a finite automaton ({type(e).__name__}: {e}): "
            "avoid anchors (^ $), \\b, back-references and look-arounds"
        ) from e


@functools.lru_cache(maxsize=64)
def _any_fsm(min_chars: int, max_chars: int | None) -> Any:
    """Any `min_chars`..`max_chars` characters (None: unbounded), built directly as an FSM.

    (Parsing an any-character class makes interegular scan all of Unicode once, about 0.3 s.)
    """
    from interegular.fsm import FSM, Alphabet, anything_else

    alphabet = Alphabet({anything_else: 0})
    if max_chars is None:  # states 0..min_chars, the last one loops
        n = min_chars + 1
        transitions = {i: {0: min(i + 1, min_chars)} for i in range(n)}
        return FSM(alphabet=alphabet, states=set(range(n)), initial=0, finals={min_chars}, map=transitions)
    n = max_chars + 1
    transitions = {i: ({0: i + 1} if i < max_chars else {}) for i in range(n)}
    return FSM(alphabet=alphabet, states=set(range(n)), initial=0, finals=set(range(min_chars, n)), map=transitions)


def _show(text: str, width: int = 60) -> str:
    """`text` quoted for a message, cut to `width` characters (a spec may be 16 kB)."""
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def _concat(*fsms: Any) -> Any:
    first, *rest = fsms
    return first.concatenate(*rest) if rest else first


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _json_value_pattern(key: str, spec: Any) -> str:
    """The regex of one JSON value spec (see the module docstring)."""
    if isinstance(spec, str):
        if spec in _JSON_VALUE_PATTERNS:
            return _JSON_VALUE_PATTERNS[spec]
    elif isinstance(spec, tuple) and spec and all(isinstance(x, tuple) and len(x) == 2 for x in spec):
        as_dict = dict(spec)
        if set(as_dict) == {"pattern"} and isinstance(as_dict["pattern"], str):
            _check_pattern(as_dict["pattern"], f"the pattern of JSON key {_show(key)} ({_show(as_dict['pattern'])})")
            return '"(?:' + as_dict["pattern"] + ')"'
        if set(as_dict) == {"enum"} and isinstance(as_dict["enum"], tuple):
            return _json_value_pattern(key, as_dict["enum"])
    elif isinstance(spec, tuple) and spec and all(isinstance(x, str) for x in spec):
        check_options(spec, f"the enum of JSON key {_show(key)}")
        return "(?:" + "|".join(_literal(json.dumps(x, ensure_ascii=False)) for x in spec) + ")"
    raise FormatSpecError(
        f"JSON value spec for {key!r} is {spec!r}: use one of {sorted(_JSON_VALUE_PATTERNS)}, "
        'a list of strings (enum), {"enum": [...]} or {"pattern": "<regex>"}'
    )
