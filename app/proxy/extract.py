"""Find the context and the question in an OpenAI chat request's messages.

What counts as context (the README's "Pruning proxy" section lists the same):
- a `role: "tool"` message (a tool's result): the whole text, split further as below when it holds several passages;
- in a user or system message: passages in XML-ish tags (`<document>`, `<doc>`, `<passage>`, `<chunk>`, `<source>`,
  `<search_result>`, `<result>`), containers of them or of plain text (`<context>`, `<documents>`, `<passages>`,
  `<sources>`, `<search_results>`, `<retrieved>`, `<knowledge>`), and a labelled block (`Context:`, `Documents:`,
  `Passages:`, `Sources:`, `Search results:`, `Retrieved documents:` ... up to a `Question:` / `Query:` /
  `Instructions:` line or the end); outside those, two or more passages with explicit markers (`[1]`,
  `Passage 2:`, `Document 3`, `Source 4`);
- inside a tool result, a container or a block: numbered items (`[1]`, `(1)`, `1.`, `#1`, `Passage 1` ...) or
  `Title:` lines start passages; a marker line with text below it is the passage's title; without markers a
  block splits at blank lines, a tool result or a container stays one passage;
- or exactly what a request marks in its extension field (`prunekit.context`: message indices and/or verbatim
  strings of its messages), and then nothing else.
Assistant messages are never context. The question is the last user message's text outside the context (after a
`Question:` label when there is one).

Pure functions over plain data: no I/O, no model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prunekit.decoding.errors import InvalidRequestError

__all__ = ["Extraction", "Passage", "TextRef", "extract", "message_texts"]

TextRef = tuple[int, int | None]  # (message index, content part index or None for a string content)

_PASSAGE_TAGS = "document|doc|passage|chunk|source|search_result|result"
_CONTAINER_TAGS = "context|documents|passages|sources|search_results|retrieved|knowledge"
_PASSAGE_NAMES = frozenset(_PASSAGE_TAGS.split("|"))
_CONTAINER_NAMES = frozenset(_CONTAINER_TAGS.split("|"))
# Opening and closing tags alone (linear time); `_pairs` matches them up with a stack. A `(.*?)</\1>` pattern would
# rescan the rest of the text for every unclosed tag: quadratic on a hostile body.
_TAG_TOKEN = re.compile(rf"<(/?)({_PASSAGE_TAGS}|{_CONTAINER_TAGS})\b([^<>]{{0,500}})>", re.I)
_TITLE_ATTR = re.compile(r"""\btitle\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_BLOCK_LABEL = re.compile(
    r"^[ \t]*(?:contexts?|documents|passages|sources|search results|retrieved (?:documents|passages|context)"
    r"|reference documents)[ \t]*:[ \t]*",
    re.I | re.M,
)
_BLOCK_END = re.compile(r"^[ \t]*(?:question|query|q|instructions?|task)[ \t]*:", re.I | re.M)
_QUESTION_LABEL = re.compile(r"^[ \t]*(?:question|query|q)[ \t]*:[ \t]*", re.I | re.M)
_NAMED = r"(?:passage|document|doc|source|chunk|result|context)[ \t]*#?\d{1,4}"
_STRONG_MARKER = re.compile(rf"^[ \t]*(?:\[\d{{1,4}}\]|{_NAMED})(?=[\s:.)\]-])[ \t:.)-]*", re.I | re.M)
_ANY_MARKER = re.compile(
    rf"^[ \t]*(?:\[\d{{1,4}}\]|\(\d{{1,4}}\)|\d{{1,4}}[.)]|#\d{{1,4}}|{_NAMED}|title[ \t]*:)(?=[\s:.)\]-]|$)[ \t:.)-]*",
    re.I | re.M,
)
_TITLE_PREFIX = re.compile(r"^(?:title[ \t]*:[ \t]*)?(.*?)[ \t]*:?[ \t]*$", re.I)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_MAX_TITLE_CHARS = 200
_MAX_TAGS = 4096  # tags read per text (opening and closing): bounds the work a hostile body can ask for


@dataclass(frozen=True)
class Passage:
    """One passage: its body is `text[start:end]` of the message text `ref`; dropping it whole removes
    `text[drop_start:drop_end]` (its marker line or tags too)."""

    ref: TextRef
    start: int
    end: int
    drop_start: int
    drop_end: int
    title: str | None
    source: str  # tool | tag | container | block | marked | explicit


@dataclass(frozen=True)
class Extraction:
    passages: list[Passage]
    question: str


def message_texts(messages: Sequence[Any]) -> dict[TextRef, str]:
    """Every text of the messages: a string content, or each `{"type": "text"}` part of a list content."""
    texts: dict[TextRef, str] = {}
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequestError(f"messages[{i}] must be an object")
        content = message.get("content")
        if isinstance(content, str):
            texts[(i, None)] = content
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                    texts[(i, j)] = part["text"]
    return texts


def extract(messages: Sequence[Any], explicit: Sequence[int | str] | None = None) -> Extraction:
    """The passages of `messages` and the question (see the module docstring).

    >>> e = extract([{"role": "user", "content": "Context:\\n[1] Paris\\nParis is in France.\\n[2] Oslo\\nOslo is "
    ...              "in Norway.\\n\\nQuestion: Where is Paris?"}])
    >>> [p.title for p in e.passages], e.question
    (['Paris', 'Oslo'], 'Where is Paris?')
    """
    texts = message_texts(messages)
    roles = {ref: messages[ref[0]].get("role") for ref in texts}
    if explicit is not None:
        passages = _explicit(texts, roles, explicit)
    else:
        passages = [p for ref, text in texts.items() for p in _passages_of(ref, text, roles[ref])]
    return Extraction(passages, _question(texts, roles, passages))


def _passages_of(ref: TextRef, text: str, role: Any) -> list[Passage]:
    if role == "tool":
        return _split(ref, text, 0, len(text), "tool", whole_fallback=True)
    if role not in ("user", "system"):
        return []
    tagged = _tagged(ref, text)
    if tagged:
        return tagged
    block = _BLOCK_LABEL.search(text)
    if block:
        end_match = _BLOCK_END.search(text, block.end())
        end = end_match.start() if end_match else len(text)
        return _split(ref, text, block.end(), end, "block", whole_fallback=False)
    markers = list(_STRONG_MARKER.finditer(text))
    return _numbered(ref, text, markers, len(text), "marked") if len(markers) >= 2 else []


@dataclass(frozen=True)
class _Tag:
    start: int
    end: int
    name: str
    attributes: str


def _pairs(text: str, names: frozenset[str]) -> list[tuple[_Tag, _Tag]]:
    """Matched (opening, closing) tags of `names`, outermost only, in text order. (Plain records, not `re.Match`
    objects: tens of thousands of live matches make the garbage collector's passes quadratic.)"""
    open_tags: list[_Tag] = []
    pairs = []
    for count, m in enumerate(_TAG_TOKEN.finditer(text)):
        if count >= _MAX_TAGS:
            break  # more tags than any context holds: the rest is not read as passages
        name = m.group(2).lower()
        if name not in names:
            continue
        tag = _Tag(m.start(), m.end(), name, m.group(3))
        if not m.group(1):
            open_tags.append(tag)
            continue
        while open_tags and open_tags[-1].name != name:
            open_tags.pop()  # an unclosed tag inside: ignore it
        if open_tags:
            pairs.append((open_tags.pop(), tag))
    pairs.sort(key=lambda pair: pair[0].start)
    outermost: list[tuple[_Tag, _Tag]] = []
    for pair in pairs:
        if not outermost or pair[0].start >= outermost[-1][1].end:
            outermost.append(pair)
    return outermost


def _tagged(ref: TextRef, text: str) -> list[Passage]:
    """Passage tags anywhere; containers without passage tags inside split as a block."""
    passages = []
    for opening, closing in _pairs(text, _PASSAGE_NAMES):
        title = _TITLE_ATTR.search(opening.attributes)
        name = (title.group(1) or title.group(2)).strip() if title else None
        passages.append(
            _trimmed(ref, text, opening.end, closing.start, opening.start, closing.end, name or None, "tag")
        )
    if passages:
        return passages
    for opening, closing in _pairs(text, _CONTAINER_NAMES):
        passages.extend(_split(ref, text, opening.end, closing.start, "container", whole_fallback=True))
    return passages


def _split(ref: TextRef, text: str, start: int, end: int, source: str, whole_fallback: bool) -> list[Passage]:
    """Passages of `text[start:end]`: numbered items, else paragraphs (a block) or the whole (tool, container)."""
    markers = list(_ANY_MARKER.finditer(text, start, end))
    if len(markers) >= 2:
        return _numbered(ref, text, markers, end, source)
    if whole_fallback:
        return [_trimmed(ref, text, start, end, start, end, None, source)] if text[start:end].strip() else []
    out, pos = [], start
    for brk in [*_PARAGRAPH_BREAK.finditer(text, start, end), None]:
        stop = brk.start() if brk else end
        if text[pos:stop].strip():
            out.append(_trimmed(ref, text, pos, stop, pos, stop, None, source))
        pos = brk.end() if brk else end
    return out


def _numbered(ref: TextRef, text: str, markers: list[re.Match[str]], end: int, source: str) -> list[Passage]:
    """One passage per marker, up to the next marker; a marker line with text below it is the title."""
    out = []
    for k, marker in enumerate(markers):
        stop = markers[k + 1].start() if k + 1 < len(markers) else end
        body_start, title = marker.end(), None
        newline = text.find("\n", marker.end(), stop)
        heading = text[marker.end() : newline] if newline >= 0 else ""
        if newline >= 0 and len(heading) <= _MAX_TITLE_CHARS and text[newline:stop].strip():
            title = _TITLE_PREFIX.match(heading.strip()).group(1) or None  # type: ignore[union-attr]
            body_start = newline + 1
        out.append(_trimmed(ref, text, body_start, stop, marker.start(), stop, title, source))
    return out


def _trimmed(
    ref: TextRef, text: str, start: int, end: int, drop_start: int, drop_end: int, title: str | None, source: str
) -> Passage:
    """A passage whose body excludes surrounding whitespace (kept in place when the body is cut)."""
    body = text[start:end]
    lead = len(body) - len(body.lstrip())
    trail = len(body) - len(body.rstrip())
    return Passage(ref, start + lead, max(start + lead, end - trail), drop_start, drop_end, title, source)


def _explicit(texts: dict[TextRef, str], roles: dict[TextRef, Any], marks: Sequence[int | str]) -> list[Passage]:
    """The passages a request marked: whole messages by index, or verbatim strings found in its messages."""
    passages = []
    for n, mark in enumerate(marks):
        if isinstance(mark, int) and not isinstance(mark, bool):
            refs = [ref for ref in texts if ref[0] == mark and roles[ref] != "assistant"]
            if not refs:
                raise InvalidRequestError(f"prunekit.context[{n}]: message {mark} has no text to prune")
            passages.extend(Passage(r, 0, len(texts[r]), 0, len(texts[r]), None, "explicit") for r in refs)
            continue
        found = next(((r, t.find(mark)) for r, t in texts.items() if roles[r] != "assistant" and mark in t), None)
        if found is None:
            raise InvalidRequestError(
                f"prunekit.context[{n}] is not a verbatim part of any user, system or tool message: mark context "
                "by message index or by its exact text"
            )
        ref, at = found
        passages.append(Passage(ref, at, at + len(mark), at, at + len(mark), None, "explicit"))
    return _without_overlaps(passages)


def _without_overlaps(passages: list[Passage]) -> list[Passage]:
    kept: list[Passage] = []
    for p in sorted(passages, key=lambda p: (p.ref[0], p.ref[1] or 0, p.drop_start)):
        if kept and kept[-1].ref == p.ref and p.drop_start < kept[-1].drop_end:
            continue  # marked twice, or inside a marked message: once is enough
        kept.append(p)
    return kept


def _question(texts: dict[TextRef, str], roles: dict[TextRef, Any], passages: list[Passage]) -> str:
    """The last user message's text outside the context; from its `Question:` label on when it has one."""
    user_refs = [ref for ref in texts if roles[ref] == "user"]
    if not user_refs:
        return ""
    last = max(ref[0] for ref in user_refs)
    pieces = []
    for ref in (r for r in user_refs if r[0] == last):
        text, pos, outside = texts[ref], 0, []
        for p in sorted((p for p in passages if p.ref == ref), key=lambda p: p.drop_start):
            outside.append(text[pos : p.drop_start])
            pos = max(pos, p.drop_end)
        outside.append(text[pos:])
        pieces.append("\n".join(outside))
    rest = _TAG_TOKEN.sub(" ", "\n".join(pieces))  # the empty shells of containers
    labels = list(_QUESTION_LABEL.finditer(rest))
    if labels:
        rest = rest[labels[-1].end() :]
    return " ".join(rest.split())
