r"""Static limits on format specs: a format bomb is refused before any automaton is built.

Why: interegular builds a regex's whole automaton before anything can count its states. `regex:a{50000}` (a
60-byte request) pinned a service worker at 100 % CPU for minutes, and `(x|y)*x(x|y){24}` needs 2^25 DFA states.
This module reads a spec without building anything, in time linear in its length, and raises
`FormatTooLargeError` naming what is too large and the limit. It is the cheap first line: whatever passes still
compiles under a hard deadline and memory cap in a child process (`decoding.decog.bounded`).

The limits follow from the token DFA's cap of 256 states (`token_dfa.DEFAULT_MAX_STATES`). With a byte-level
vocabulary (every byte is a token, as in SmolLM2's), every character state of a format is a token-DFA state too, so:

- `MAX_REPEAT` = 256: a bounded repeat `{n,m}` counts, one state per count; m (or n in `{n,}`) above 256 can
  never fit. `a{50000}` stops here.
- `MAX_LITERAL_CHARS` = 256: a literal (a JSON key, an enum or choice option, a pivot's text) needs a state per
  character.
- `MAX_POSITIONS` = 4,096: the characters of a spec once nested repeats are expanded (`(a{200}){200}` is 40,000)
  bound the automaton interegular builds before minimising. 16 times the state cap leaves room for formats that
  minimise well (the regex `0|1|...|999` is 2,890 positions and 4 states).
- `MAX_DFA_STATES` = 1,024: an estimate of the DFA states before minimisation (`estimate_regex`), which runs up to
  2.4 times the minimised count on the shapes measured (a JSON object of 12 strings: 531 for 220), so four times
  the state cap keeps every format that can fit (the compile child caps character states at the same 1,024).
  Fixed strings count their prefix tree. A
  variable-length part (`*`, `+`, `{n,m}`) lets the text after it start at several offsets at once; where that
  text reads a class an earlier class of it splits (`x` then `[xy]`), the DFA must remember, position by position,
  which starts are still alive, and each such position doubles the states. After a bounded repeat the DFA also
  counts through the repeat (`<free:64>` before a pivot multiplies the pivot's states by 64). On a 2-core EPYC,
  interegular builds 2^10 states of `(x|y)*x(x|y){n}` in 0.2 s, 2^12 in 2.8 s; 2^24 would take hours. The
  estimate bounds states, not time: `pivot:<free:32>Final: <int><free:16>.` (236 states) takes a minute to build,
  which is what the child's deadline is for.
- `MAX_CLASS_CHARS` = 65,536 (the Basic Multilingual Plane): interegular lists every character of a class range
  (`[\u0100-\uffff]` is 65,280 of them), and the char automaton keeps one table entry per listed character and state.
- `MAX_REGEX_CHARS` = 4,096, `MAX_SPEC_CHARS` = 16,384 (8 times the HTTP API's 2,000-character `format` field),
  `MAX_NESTING` = 32 groups deep, and for `json:` 64 properties, 256 enum options, 4,096 values, 4 levels deep.
  These keep every check here linear and fast on any input the service accepts.

The estimate is a heuristic upper bound for common shapes, not a proof: the child process's deadline catches
what it misses.
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field
from re import _constants as sre
from re import _parser as sre_parse
from typing import Any

from prunekit.decoding.decog.errors import FormatTooLargeError, InvalidRegexError

__all__ = [
    "MAX_CLASSES",
    "MAX_CLASS_CHARS",
    "MAX_DFA_STATES",
    "MAX_JSON_DEPTH",
    "MAX_JSON_NODES",
    "MAX_JSON_PROPERTIES",
    "MAX_LITERAL_CHARS",
    "MAX_NESTING",
    "MAX_OPTIONS",
    "MAX_POSITIONS",
    "MAX_REGEX_CHARS",
    "MAX_REPEAT",
    "MAX_SPEC_CHARS",
    "RegexShape",
    "check_json_schema",
    "check_literal",
    "check_options",
    "check_regex",
    "check_spec_size",
    "estimate_regex",
]

MAX_REPEAT = 256
MAX_LITERAL_CHARS = 256
MAX_OPTIONS = 256
MAX_POSITIONS = 4_096
MAX_DFA_STATES = 1_024
MAX_CLASS_CHARS = 65_536
MAX_CLASSES = 128  # distinct multi-character classes in one regex (the estimate compares them pairwise)
MAX_REGEX_CHARS = 4_096
MAX_SPEC_CHARS = 16_384
MAX_NESTING = 32
MAX_JSON_PROPERTIES = 64
MAX_JSON_NODES = 4_096
MAX_JSON_DEPTH = 4  # the object, a {"enum": [...]} spec, its list, its strings

_MAX_CODE = 0x10FFFF
_BIG = 1 << 62  # saturation: counts past this are "too many" whatever the limit

Chars = tuple[tuple[int, int], ...]  # sorted, disjoint, inclusive code point intervals


# --------------------------------------------------------------------------- spec-level checks
def check_spec_size(spec: str, what: str = "the format spec") -> None:
    """Refuse a spec longer than `MAX_SPEC_CHARS`."""
    if len(spec) > MAX_SPEC_CHARS:
        raise FormatTooLargeError(
            f"{what} is {len(spec):,} characters long, above the limit of {MAX_SPEC_CHARS:,}: shorten it"
        )


def check_literal(text: str, what: str) -> None:
    """Refuse a literal (key, option, pivot text) longer than `MAX_LITERAL_CHARS`: one automaton state per character."""
    if len(text) > MAX_LITERAL_CHARS:
        raise FormatTooLargeError(
            f"{what} is {len(text):,} characters long, above the limit of {MAX_LITERAL_CHARS}: a format has at most "
            f"{MAX_LITERAL_CHARS} automaton states, one per fixed character; shorten it"
        )


def check_options(options: tuple[str, ...] | list[str], what: str) -> None:
    """Refuse more than `MAX_OPTIONS` options (a choice or an enum), or one too long."""
    if len(options) > MAX_OPTIONS:
        raise FormatTooLargeError(
            f"{what} has {len(options):,} options, above the limit of {MAX_OPTIONS}: offer fewer, or describe them "
            "with a pattern"
        )
    for option in options:
        if isinstance(option, str):
            check_literal(option, f"an option of {what}")


def check_json_schema(obj: Any) -> None:
    """Refuse a `json:` body that is too big for a format: properties, values, nesting, enum and string sizes.

    Iterative (no recursion), and it stops at the first excess, so a 1 MB body costs one pass at most.
    """
    if isinstance(obj, dict) and len(obj) > MAX_JSON_PROPERTIES:
        raise FormatTooLargeError(
            f"the json: format has {len(obj):,} properties, above the limit of {MAX_JSON_PROPERTIES}: ask for fewer "
            "keys at once"
        )
    nodes = 0
    stack: list[tuple[Any, int, str]] = [(obj, 1, "the json: format")]
    while stack:
        value, depth, where = stack.pop()
        nodes += 1
        if nodes > MAX_JSON_NODES:
            raise FormatTooLargeError(
                f"the json: format has more than {MAX_JSON_NODES:,} values, above the limit: simplify it"
            )
        if isinstance(value, dict | list) and depth > MAX_JSON_DEPTH:
            raise FormatTooLargeError(
                f"the json: format nests deeper than {MAX_JSON_DEPTH} levels, above the limit: it is a flat object "
                'of key -> type, e.g. {"answer": "string", "verdict": ["yes", "no"]}'
            )
        if isinstance(value, dict):
            for key, item in value.items():
                stack.append((item, depth + 1, f"the value of {_show(key)}" if depth == 1 else where))
        elif isinstance(value, list):
            if len(value) > MAX_OPTIONS:
                raise FormatTooLargeError(
                    f"the enum of {where} has {len(value):,} options, above the limit of {MAX_OPTIONS}: offer "
                    'fewer, or describe them with {"pattern": ...}'
                )
            stack.extend((item, depth + 1, where) for item in value)
        elif isinstance(value, str) and len(value) > MAX_REGEX_CHARS:
            raise FormatTooLargeError(
                f"a string in {where} is {len(value):,} characters long, above the limit of {MAX_REGEX_CHARS:,}"
            )


# --------------------------------------------------------------------------- regex checks
@dataclass(frozen=True)
class RegexShape:
    """What the static reading of a regex found (all counts saturate; see the module docstring)."""

    positions: int  # characters once bounded repeats are expanded
    dfa_states: float  # estimated DFA states before minimisation
    class_chars: int  # characters listed in class ranges (interegular enumerates each)


def check_regex(pattern: str, what: str | None = None) -> RegexShape:
    """Refuse a regex whose automaton would be too large to build, without building it.

    Raises `InvalidRegexError` when Python's parser rejects it, `FormatTooLargeError` past a limit.

    >>> check_regex(r"-?\\d+").positions
    3
    >>> check_regex("a{50000}")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    prunekit.decoding.decog.errors.FormatTooLargeError: the regex 'a{50000}' repeats {50000}, above the limit of 256...
    """
    what = what or f"the regex {_show(pattern)}"
    if len(pattern) > MAX_REGEX_CHARS:
        raise FormatTooLargeError(
            f"{what} is {len(pattern):,} characters long, above the limit of {MAX_REGEX_CHARS:,}: shorten it"
        )
    depth = _nesting_depth(pattern)
    if depth > MAX_NESTING:
        raise FormatTooLargeError(f"{what} nests groups {depth} deep, above the limit of {MAX_NESTING}: flatten it")
    return estimate_regex(pattern, what)


def estimate_regex(pattern: str, what: str) -> RegexShape:
    """The `RegexShape` of a Python regex, refused past `MAX_REPEAT`, `MAX_POSITIONS`, `MAX_DFA_STATES` or
    `MAX_CLASS_CHARS` (also used on a whole format's `python_regex()`, where a user regex may follow free text)."""
    try:
        tree = sre_parse.parse(pattern)
    except re.error as e:
        raise InvalidRegexError(f"invalid regex {pattern!r}: {e}") from e
    except RecursionError as e:
        raise FormatTooLargeError(f"{what} nests too deeply: flatten it") from e
    walk = _Estimator(what)
    walk.close(walk.seq(tree.data, _Context()))
    shape = RegexShape(walk.positions, walk.states, walk.class_chars)
    if shape.positions > MAX_POSITIONS:
        raise FormatTooLargeError(
            f"{what} expands to {_count(shape.positions)} characters (nested repeats multiply), above the limit of "
            f"{MAX_POSITIONS:,}: lower the repeat counts"
        )
    if shape.dfa_states > MAX_DFA_STATES:
        why = (
            "after a variable-length part (*, +, {n,m}), text whose classes overlap (x then [xy]) makes the "
            "automaton track every possible start; make that part unambiguous or shorter"
            if walk.tail_states * 2 > walk.states
            else "use fewer or shorter alternatives, literals and repeats"
        )
        raise FormatTooLargeError(
            f"{what} needs about {_count(shape.dfa_states)} automaton states, above the limit of {MAX_DFA_STATES:,}: "
            + why
        )
    return shape


# --------------------------------------------------------------------------- the estimate
@dataclass
class _Tail:
    """A stretch of text that may have begun at several offsets at once (it follows a variable-length part).

    `bits` is log2 of the product, over its positions, of how many pieces the position's class is split into by
    the classes read before it in the stretch (1 for a fixed character). The DFA tracks which starts are still
    alive: about `2 ** (bits + 1)` sets of them, and never more than the subsets of at most `starts` offsets.
    """

    starts: int  # how many offsets the stretch may have begun at (a loop: unbounded)
    span: int = 1  # after a bounded repeat, the DFA also counts through it: its states multiply the stretch's
    sets: list[Chars] = field(default_factory=list)  # distinct multi-character classes read so far
    members: set[Chars] = field(default_factory=set)
    singles: list[int] = field(default_factory=list)  # distinct single characters read so far, in reading order
    single_set: set[int] = field(default_factory=set)
    seen: dict[Chars, tuple[int, int, int]] = field(default_factory=dict)  # class -> (sets, singles checked, splits)
    bits: float = 0.0
    length: int = 0

    def read(self, chars: Chars, times: int) -> None:
        if _is_single(chars):
            if chars[0][0] not in self.single_set:
                self.single_set.add(chars[0][0])
                self.singles.append(chars[0][0])
        else:
            self.bits += times * math.log2(self.splits(chars))
            if chars not in self.members:
                self.members.add(chars)
                self.sets.append(chars)
        self.length = min(self.length + times, _BIG)

    def splits(self, chars: Chars) -> int:
        """Pieces `chars` is cut into by the classes and characters read before (incremental per class)."""
        n_sets, n_singles, count = self.seen.get(chars, (0, 0, 1))
        for other in self.sets[n_sets:]:
            if other != chars and _intersects(other, chars) and not _subset(chars, other):
                count += 1
        starts = [lo for lo, _ in chars]
        for code in self.singles[n_singles:]:
            i = bisect.bisect_right(starts, code) - 1
            if i >= 0 and code <= chars[i][1]:
                count += 1
        self.seen[chars] = (len(self.sets), len(self.singles), count)
        return min(count, _size(chars))

    def states(self) -> float:
        subsets = math.log2(self.length + 1) * self.starts  # log2 of (length + 1) ** starts
        return self.span * (self.length + 2.0 ** (min(self.bits + 1, subsets, 80.0)))


@dataclass
class _Context:
    """Where the walk stands: the characters of variable-length parts just read (text after them may also start
    inside them) and at how many offsets, and the open stretch, if any."""

    source: Chars | None = None
    starts: int = 0
    span: int = 1
    tail: _Tail | None = None


class _Estimator:
    """One pass over `re._parser`'s tree; per-subtree sizes are memoised, so the walk is linear in the tree."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.positions = 0
        self.states = 0.0
        self.tail_states = 0.0  # the part of `states` that stretches after variable-length parts account for
        self.class_chars = 0
        self.classes: dict[Chars, Chars] = {}  # interned multi-character classes
        self._size: dict[int, int] = {}
        self._chars: dict[int, Chars] = {}
        self._counts: dict[int, dict[Chars, int]] = {}

    # ------------------------------------------------------------------ walking
    def seq(self, items: list[tuple[Any, Any]], ctx: _Context) -> _Context:
        for op, av in items:
            ctx = self.item(op, av, ctx)
        return ctx

    def item(self, op: Any, av: Any, ctx: _Context) -> _Context:
        if op in _CHAR_OPS:
            return self.read(self.chars_of(op, av), 1, ctx)
        if op is sre.SUBPATTERN:
            return self.seq(av[3].data, ctx)
        if op is sre.ATOMIC_GROUP:
            return self.seq(av.data, ctx)
        if op is sre.BRANCH:
            return self.branch([alt.data for alt in av[1]], ctx)
        if op in _REPEAT_OPS:
            return self.repeat(av[0], av[1], av[2].data, ctx)
        return ctx  # anchors, look-arounds, back-references: zero width here (interegular refuses what it can't build)

    def read(self, chars: Chars, times: int, ctx: _Context) -> _Context:
        self.positions = min(self.positions + times, _BIG)
        if ctx.tail is None and ctx.source is not None:
            ctx = _Context(tail=_Tail(ctx.starts, ctx.span) if _intersects(ctx.source, chars) else None)
        if ctx.tail is None:
            self.states = min(self.states + times, _BIG)
        else:
            ctx.tail.read(chars, times)
        return ctx

    def branch(self, alternatives: list[list[tuple[Any, Any]]], ctx: _Context) -> _Context:
        trie = _trie_size(alternatives) if ctx.tail is None and ctx.source is None else None
        if trie is not None:  # fixed strings (a choice, an enum): the DFA is at most their prefix tree
            self.positions = min(self.positions + sum(len(alt) for alt in alternatives), _BIG)
            self.states = min(self.states + trie, _BIG)
            return ctx
        if ctx.tail is not None:  # one shared stretch: classes accumulate, length and bits are the largest
            tail = ctx.tail
            base_bits, base_length = tail.bits, tail.length
            bits, length, after = base_bits, base_length, []
            for alt in alternatives:
                tail.bits, tail.length = base_bits, base_length
                out = self.seq(alt, _Context(tail=tail))
                if out.tail is tail:
                    bits, length = max(bits, tail.bits), max(length, tail.length)
                else:  # a loop in the branch closed the stretch; what follows it may open another
                    self.close(out)
                    after.append(out)
            tail.bits, tail.length = bits, length
            return _merge_sources(after, tail)
        outs = [self.seq(alt, _Context(ctx.source, ctx.starts, ctx.span)) for alt in alternatives]
        tails = sorted((o.tail for o in outs if o.tail is not None), key=lambda t: t.states())
        for other in tails[:-1]:  # alternatives' stretches add up; the largest stays open
            self.close(_Context(tail=other))
        return _merge_sources([o for o in outs if o.tail is None], tails[-1] if tails else None)

    def repeat(self, lo: int, hi: int, body: list[tuple[Any, Any]], ctx: _Context) -> _Context:
        unbounded = hi == sre.MAXREPEAT
        if lo > MAX_REPEAT or (not unbounded and hi > MAX_REPEAT):
            quant = f"{{{lo}}}" if lo == hi else f"{{{lo},}}" if unbounded else f"{{{lo},{hi}}}"
            raise FormatTooLargeError(
                f"{self.what} repeats {quant}, above the limit of {MAX_REPEAT}: a repeat needs an automaton state "
                f"per count and a format has at most {MAX_REPEAT}; use + or * and bound the length with max_tokens"
            )
        if hi == 0:
            return ctx
        size, chars = self.size(body), self.chars(body)
        skipped = ctx if lo == 0 and ctx.tail is None and ctx.source is not None else None  # the body may be absent
        if unbounded:
            self.close(ctx)  # a loop ends the stretch before it
            extra = min(lo * size, _BIG)  # interegular builds the mandatory copies, then the loop
            self.positions = min(self.positions + extra, _BIG)
            self.states = min(self.states + extra, _BIG)
            self.close(self.seq(body, _Context(chars, _BIG)))  # a new turn may begin inside the last one
            return _merge_sources([_Context(chars, _BIG), *([skipped] if skipped else [])], None)
        ctx = self.seq(body, ctx)  # the first copy, in reading order
        if hi > 1:  # every further copy reads the body's classes again, against all read so far
            extra = min((hi - 1) * size, _BIG)
            self.positions = min(self.positions + extra, _BIG)
            if ctx.tail is not None:
                for cls, n in self.counts(body).items():
                    ctx.tail.read(cls, min(n * (hi - 1), _BIG))
            else:
                self.states = min(self.states + extra, _BIG)
        if ctx.tail is None and hi > lo:  # a variable count: what follows may start at hi - lo + 1 offsets
            counted = _Context(chars, hi - lo + 1, min(hi * size, _BIG))
            ctx = _merge_sources([ctx, counted, *([skipped] if skipped else [])], None)
        return ctx

    def close(self, ctx: _Context) -> None:
        if ctx.tail is not None:
            self.states = min(self.states + ctx.tail.states(), float(_BIG))
            self.tail_states = min(self.tail_states + ctx.tail.states(), float(_BIG))
            ctx.tail = None

    # ------------------------------------------------------------------ memoised subtree summaries
    def size(self, items: list[tuple[Any, Any]]) -> int:
        key = id(items)
        if key not in self._size:
            total = 0
            for op, av in items:
                if op in _CHAR_OPS:
                    total += 1
                elif op is sre.SUBPATTERN:
                    total += self.size(av[3].data)
                elif op is sre.ATOMIC_GROUP:
                    total += self.size(av.data)
                elif op is sre.BRANCH:
                    total += sum(self.size(alt.data) for alt in av[1])
                elif op in _REPEAT_OPS:
                    lo, hi, sub = av
                    total += self.size(sub.data) * (lo + 1 if hi == sre.MAXREPEAT else hi)
                total = min(total, _BIG)
            self._size[key] = total
        return self._size[key]

    def chars(self, items: list[tuple[Any, Any]]) -> Chars:
        key = id(items)
        if key not in self._chars:
            parts = [self._children_chars(op, av) for op, av in items]
            self._chars[key] = _union(*[p for p in parts if p])
        return self._chars[key]

    def _children_chars(self, op: Any, av: Any) -> Chars:
        if op in _CHAR_OPS:
            return self.chars_of(op, av, count=False)
        if op is sre.SUBPATTERN:
            return self.chars(av[3].data)
        if op is sre.ATOMIC_GROUP:
            return self.chars(av.data)
        if op is sre.BRANCH:
            return _union(*[self.chars(alt.data) for alt in av[1]])
        if op in _REPEAT_OPS:
            return self.chars(av[2].data)
        return ()

    def counts(self, items: list[tuple[Any, Any]]) -> dict[Chars, int]:
        """How many positions of each class one copy of `items` reads (the largest branch, per class)."""
        key = id(items)
        if key not in self._counts:
            out: dict[Chars, int] = {}
            for op, av in items:
                if op in _CHAR_OPS:
                    part = {self.chars_of(op, av, count=False): 1}
                elif op is sre.SUBPATTERN:
                    part = self.counts(av[3].data)
                elif op is sre.ATOMIC_GROUP:
                    part = self.counts(av.data)
                elif op is sre.BRANCH:
                    part = {}
                    for alt in av[1]:
                        for cls, n in self.counts(alt.data).items():
                            part[cls] = max(part.get(cls, 0), n)
                elif op in _REPEAT_OPS:
                    _, hi, sub = av
                    times = 1 if hi == sre.MAXREPEAT else hi
                    part = {cls: min(n * times, _BIG) for cls, n in self.counts(sub.data).items()}
                else:
                    continue
                for cls, n in part.items():
                    out[cls] = min(out.get(cls, 0) + n, _BIG)
            self._counts[key] = out
        return self._counts[key]

    # ------------------------------------------------------------------ character classes
    def chars_of(self, op: Any, av: Any, count: bool = True) -> Chars:
        """The characters one position matches (interegular's reading: `.` is anything but a newline, `\\d` ASCII)."""
        if op is sre.LITERAL:
            return ((av, av),)
        if op is sre.NOT_LITERAL:
            return _complement(((av, av),))
        if op is sre.ANY:
            return _complement(((10, 10),))
        negate, parts, listed = False, [], 0
        for kind, value in av:
            if kind is sre.NEGATE:
                negate = True
            elif kind is sre.LITERAL:
                parts.append(((value, value),))
            elif kind is sre.RANGE:
                parts.append((tuple(value),))
                listed += value[1] - value[0] + 1
            elif kind is sre.CATEGORY:
                parts.append(_CATEGORIES.get(value, ()))
        chars = _union(*parts)
        chars = _complement(chars) if negate else chars
        if count:
            self.class_chars += listed
            if self.class_chars > MAX_CLASS_CHARS:
                raise FormatTooLargeError(
                    f"{self.what} lists {self.class_chars:,} characters in its class ranges, above the limit of "
                    f"{MAX_CLASS_CHARS:,}: use a negated class such as [^...] instead of a wide range"
                )
        if not _is_single(chars):
            chars = self.classes.setdefault(chars, chars)
            if len(self.classes) > MAX_CLASSES:
                raise FormatTooLargeError(
                    f"{self.what} uses more than {MAX_CLASSES} different character classes, above the limit: "
                    "simplify it"
                )
        return chars


_CHAR_OPS = frozenset({sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN})
_REPEAT_OPS = frozenset({sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT})
_DIGIT: Chars = ((48, 57),)
_WORD: Chars = ((48, 57), (65, 90), (95, 95), (97, 122))
_SPACE: Chars = ((9, 13), (32, 32))  # \t \n \v \f \r and space, as interegular reads \s


def _trie_size(alternatives: list[list[tuple[Any, Any]]]) -> int | None:
    """States of the prefix tree of alternatives that are all fixed strings (None if one is not)."""
    root: dict[int, Any] = {}
    nodes = 1
    for alt in alternatives:
        node = root
        for op, av in alt:
            if op is not sre.LITERAL:
                return None
            if av not in node:
                node[av] = {}
                nodes += 1
            node = node[av]
    return nodes


def _merge_sources(contexts: list[_Context], tail: _Tail | None) -> _Context:
    """A context whose source is every given context's (what follows may start after any of them)."""
    sources = [c for c in contexts if c.source is not None]
    if not sources:
        return _Context(tail=tail)
    starts = min(sum(c.starts for c in sources), _BIG)
    span = max(c.span for c in sources)
    return _Context(_union(*[c.source for c in sources if c.source]), starts, span, tail)


def _complement(chars: Chars) -> Chars:
    out, start = [], 0
    for lo, hi in chars:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= _MAX_CODE:
        out.append((start, _MAX_CODE))
    return tuple(out)


_CATEGORIES: dict[Any, Chars] = {
    sre.CATEGORY_DIGIT: _DIGIT,
    sre.CATEGORY_NOT_DIGIT: _complement(_DIGIT),
    sre.CATEGORY_WORD: _WORD,
    sre.CATEGORY_NOT_WORD: _complement(_WORD),
    sre.CATEGORY_SPACE: _SPACE,
    sre.CATEGORY_NOT_SPACE: _complement(_SPACE),
}


def _union(*sets: Chars) -> Chars:
    if len(sets) == 1:
        return sets[0]
    intervals = sorted(iv for s in sets for iv in s)
    out: list[tuple[int, int]] = []
    for lo, hi in intervals:
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def _intersects(a: Chars, b: Chars) -> bool:
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] < b[j][0]:
            i += 1
        elif b[j][1] < a[i][0]:
            j += 1
        else:
            return True
    return False


def _subset(a: Chars, b: Chars) -> bool:
    """Every character of `a` is in `b`."""
    return not _intersects(a, _complement(b))


def _size(chars: Chars) -> int:
    return sum(hi - lo + 1 for lo, hi in chars)


def _is_single(chars: Chars) -> bool:
    return len(chars) == 1 and chars[0][0] == chars[0][1]


def _nesting_depth(pattern: str) -> int:
    """How deep groups nest (escapes and classes skipped): Python's parser recurses once per level."""
    depth = best = 0
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern.startswith("^", i + 1):
                i += 1
            if pattern.startswith("]", i + 1):  # a leading ] is a literal
                i += 1
        elif ch == "(":
            depth += 1
            best = max(best, depth)
        elif ch == ")":
            depth = max(depth - 1, 0)
        i += 1
    return best


def _count(value: float) -> str:
    """A count for a message: exact when small, a power of two when astronomic."""
    if value < 1_000_000:
        return f"{int(value):,}"
    return f"2^{math.log2(value):.0f}"


def _show(text: Any, width: int = 60) -> str:
    text = str(text)
    return repr(text if len(text) <= width else text[: width - 3] + "...")
