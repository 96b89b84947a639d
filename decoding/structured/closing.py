"""How a grammar-constrained answer ends inside its token budget: a short way to a complete sentence of the grammar
from wherever the answer is, so the hard mask can steer into it before `max_tokens` cuts the JSON open.

A hard mask alone only says what may come next; a small model writing a long string value can run out of tokens
mid-structure (`finish_reason: length`, an answer that does not parse). `closing_tokens` walks a copy of the
llguidance matcher greedily: it takes what the grammar forces (key names, `:`), else, among the tokens the grammar
allows, the one that leaves the answer outside a string and least deeply nested, preferring plain values (`0`,
`""`) and short tokens, and commas and openers last; a number once begun is ended, not lengthened digit by digit
(`0` is a plain value, and `00...` never gets nearer the end). Every grammar the service builds is JSON inside fixed
text, so JSON's lexical state (in a string or not, how deep) is the measure of "nearer the end"; the grammar itself
decides what is allowed. The walk is deterministic, so replaying it token by token closes in exactly the length
it measured. This is the budget half of what Deco-G's lookahead does by probability (Deng, Kung, Peng 2025,
arXiv 2510.03595), for grammars its automaton does not reach.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import llguidance
import llguidance.numpy as llg_numpy
import numpy as np

from prunekit.decoding.decog.vocab import TokenVocabulary

__all__ = ["LexState", "TokenMoves", "closing_tokens", "lengtheners", "token_moves"]

OUTSIDE, IN_STRING, ESCAPED = 0, 1, 2  # where JSON's lexer is: outside a string, in one, just after a backslash
_PLAIN_VALUES = frozenset({b"0", b"1", b"true", b"false", b"null", b'""', b"[]", b"{}"})
_LENGTHENERS = frozenset(b",[{:")
_NEVER = np.iinfo(np.int64).max
_MOVES: dict[str, TokenMoves] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class LexState:
    """JSON's lexical state after some text: `where` (OUTSIDE, IN_STRING, ESCAPED), nesting `depth`, and whether
    the text ends in a number's digit (`in_number`)."""

    where: int = OUTSIDE
    depth: int = 0
    in_number: bool = False

    def after(self, text: bytes) -> LexState:
        if not text:
            return self
        where, depth = _scan(text, self.where)
        return LexState(where, self.depth + depth, where == OUTSIDE and chr(text[-1]).isdigit())


def _scan(text: bytes, where: int) -> tuple[int, int]:
    """(where the lexer ends, change in depth) after `text`, starting at `where`."""
    depth = 0
    for byte in text:
        if where == ESCAPED:
            where = IN_STRING
        elif where == IN_STRING:
            where = ESCAPED if byte == 0x5C else OUTSIDE if byte == 0x22 else IN_STRING
        elif byte == 0x22:
            where = IN_STRING
        elif byte in b"{[":
            depth += 1
        elif byte in b"}]":
            depth -= 1
    return where, depth


@dataclass(frozen=True)
class TokenMoves:
    """Per token of a vocabulary, from each lexical start (rows OUTSIDE, IN_STRING, ESCAPED): where it ends
    (`end`) and how it changes the depth (`depth`); `tie` breaks ties (plain values and short tokens first,
    commas and openers last); special tokens get `_NEVER`."""

    end: np.ndarray  # (3, vocab) int64
    depth: np.ndarray  # (3, vocab) int64
    tie: np.ndarray  # (vocab,) int64
    digit_first: np.ndarray  # (vocab,) bool: the token begins with a digit
    digit_last: np.ndarray  # (vocab,) bool: the token ends with a digit
    lengthens: np.ndarray  # (3, vocab) bool: from each lexical start, whether the token is one of `lengtheners`


def token_moves(vocab: TokenVocabulary) -> TokenMoves:
    """The vocabulary's `TokenMoves` (about a second to build for 49k tokens, so built once per vocabulary)."""
    with _LOCK:
        moves = _MOVES.get(vocab.fingerprint)
        if moves is None:
            moves = _build_moves(vocab)
            _MOVES[vocab.fingerprint] = moves
        return moves


def _build_moves(vocab: TokenVocabulary) -> TokenMoves:
    end = np.zeros((3, vocab.size), dtype=np.int64)
    depth = np.zeros((3, vocab.size), dtype=np.int64)
    tie = np.full(vocab.size, _NEVER, dtype=np.int64)
    digit_first = np.zeros(vocab.size, dtype=bool)
    digit_last = np.zeros(vocab.size, dtype=bool)
    for token, text in enumerate(vocab.token_bytes):
        if not text:
            continue
        digit_first[token], digit_last[token] = chr(text[0]).isdigit(), chr(text[-1]).isdigit()
        for start in (OUTSIDE, IN_STRING, ESCAPED):
            end[start, token], depth[start, token] = _scan(text, start)
        rank = 0 if text in _PLAIN_VALUES else 2 if set(text) & _LENGTHENERS else 1
        tie[token] = rank * 100 + min(len(text), 99)
    # opens a structure, or writes a comma, colon or bracket that is not inside one and the same string
    within_string = (np.arange(3)[:, None] != OUTSIDE) & (end != OUTSIDE)
    lengthens = (depth > 0) | ((tie >= 200) & ~within_string)
    return TokenMoves(end, depth, tie, digit_first, digit_last, lengthens)


def lengtheners(moves: TokenMoves, state: LexState) -> np.ndarray:
    """(vocab,) bool: the tokens that, from `state`, open a structure or write a comma, colon or bracket outside a
    string (each can make the way to close longer: a new element, a required key's value); special tokens too.
    Built once per vocabulary with the moves: a lookup, cheap at every token."""
    return moves.lengthens[state.where]


def closing_tokens(matcher: llguidance.LLMatcher, moves: TokenMoves, state: LexState, limit: int) -> list[int] | None:
    """Tokens that take `matcher` (left untouched) from lexical `state` to a complete sentence, at most `limit` of
    them; None when the walk finds none that short. The end-of-sequence token that must follow is not included."""
    vocab_size = moves.tie.size
    walk = matcher.deep_copy()
    bitmask = llg_numpy.allocate_token_bitmask(1, vocab_size)
    tokens: list[int] = []
    where, depth = state.where, state.depth
    in_number = state.in_number  # the answer ends in a number's digit: more digits would not end it
    while not (walk.is_accepting() or walk.is_stopped()):
        if len(tokens) >= limit or walk.is_error():
            return None
        chosen = walk.compute_ff_tokens()[: limit - len(tokens)]
        if not chosen:
            llg_numpy.fill_next_token_bitmask(walk, bitmask, 0)
            allowed = np.flatnonzero(np.unpackbits(bitmask[0].view(np.uint8), bitorder="little")[:vocab_size])
            tie = moves.tie[allowed]
            allowed = allowed[tie != _NEVER]
            if allowed.size == 0:
                return None
            if in_number and not moves.digit_first[allowed].all():
                allowed = allowed[~moves.digit_first[allowed]]
            # outside a string first, then shallowest, then the tie-break: one integer key, one argmin
            key = moves.end[where, allowed] * 10**9 + (depth + moves.depth[where, allowed] + 10**4) * 10**4
            chosen = [int(allowed[np.argmin(key + moves.tie[allowed])])]
        for token in chosen:
            where, delta = int(moves.end[where, token]), int(moves.depth[where, token])
            depth += delta
        if not walk.consume_tokens(chosen):
            return None
        in_number = where == OUTSIDE and bool(moves.digit_last[chosen[-1]])
        tokens += chosen
    return tokens
