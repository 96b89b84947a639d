"""A format's DFA over the tokenizer's vocabulary: for each state, which tokens are allowed and where they lead.

Ctrl-G (joshuacnf/Ctrl-G) and Deco-G (arXiv 2510.03595) guide decoding with a DFA whose edges are labelled by
token sets, `(u, v, mask[V])`. We build it from the byte automaton of a format by walking every token's bytes
from every state. The walk is character- (byte-) level, so pivots that span several tokens, tokens that straddle
a pivot boundary (" is 4" crossing from the pivot into the number), whitespace variants (" The" vs "The") and
tokens holding half a UTF-8 character all come out right without special cases.

Speed: all tokens walk at once, vectorised with numpy. Tokens are sorted by byte length (longest first) so that
at byte position j the tokens still walking are a prefix of the array; one gather per position advances every
(state, token) pair. States are discovered breadth-first from the initial state (only states reachable at token
boundaries become token-DFA states, some of them in the middle of a UTF-8 character). SmolLM2 (49,152 tokens)
with a ~20-state format builds in a fraction of a second (see `tests/decoding/decog/test_token_dfa.py`).

Layout: `next_state` (S, V) int32, -1 for a forbidden token. The last state, `final_state`, is reached only by
EOS from an accepting state and has no way out; a finished output is one that reached it.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prunekit.decoding.decog.automaton import ByteAutomaton, CharAutomaton
from prunekit.decoding.decog.errors import FormatBudgetError, FormatTooLargeError, UnsatisfiableFormatError
from prunekit.decoding.decog.formats import Format, compile_format, parse_format
from prunekit.decoding.decog.vocab import TokenVocabulary

__all__ = ["TokenDFA", "build_token_dfa", "compile_token_dfa"]

log = logging.getLogger(__name__)

DEAD = -1
DEFAULT_MAX_STATES = 256  # (S, V) int32 at V = 49,152: 50 MB; larger formats are refused with a clear error


@dataclass
class TokenDFA:
    """Token-level DFA. `next_state[s, v]` is the state after token v in state s, or -1 if v is not allowed."""

    next_state: np.ndarray  # (S, V) int32
    accepting: np.ndarray  # (S,) bool: the text so far satisfies the format (EOS allowed here)
    initial_state: int
    final_state: int  # reached by EOS only; no outgoing tokens
    eos_token_ids: tuple[int, ...]
    key: str = ""
    # (S,) bool: states that open a choice among fixed strings (`ByteAutomaton.choice_points`); None: unknown
    choice_states: np.ndarray | None = None
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)  # identity for caches of derived tables
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)  # derived data (the guidance plans), per consumer
    _groups: dict[int, list[tuple[int, np.ndarray]]] = field(default_factory=dict, repr=False)
    _reach: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_states(self) -> int:
        return int(self.next_state.shape[0])

    @property
    def vocab_size(self) -> int:
        return int(self.next_state.shape[1])

    # ------------------------------------------------------------------ walking
    def step(self, state: int, token: int) -> int:
        if state == DEAD or not 0 <= token < self.vocab_size:
            return DEAD
        return int(self.next_state[state, token])

    def walk(self, tokens: list[int] | np.ndarray, state: int | None = None) -> int:
        """State after `tokens` from `state` (default: initial), or -1 once a token is not allowed."""
        s = self.initial_state if state is None else state
        for t in tokens:
            s = self.step(s, int(t))
            if s == DEAD:
                return DEAD
        return s

    def accepts(self, tokens: list[int] | np.ndarray) -> bool:
        """True if `tokens` are a complete formatted output: they end in EOS, or end in an accepting state."""
        s = self.walk(tokens)
        return s != DEAD and (s == self.final_state or bool(self.accepting[s]))

    # ------------------------------------------------------------------ structure
    def groups(self, state: int) -> list[tuple[int, np.ndarray]]:
        """Allowed tokens of `state` grouped by next state, largest group first: [(next_state, token ids), ...]."""
        if state not in self._groups:
            row = self.next_state[state]
            ids = np.flatnonzero(row >= 0)
            nxt = row[ids]
            order = np.argsort(nxt, kind="stable")
            ids, nxt = ids[order], nxt[order]
            cuts = np.flatnonzero(np.diff(nxt)) + 1
            groups = [
                (int(g_n[0]), g_i)
                for g_i, g_n in zip(np.split(ids, cuts), np.split(nxt, cuts), strict=True)
                if len(g_i)
            ]
            groups.sort(key=lambda g: -len(g[1]))
            self._groups[state] = groups
        return self._groups[state]

    def edges(self) -> list[tuple[int, int, np.ndarray]]:
        """Ctrl-G's edge list: (u, v, bool mask (V,)) for every pair of states joined by at least one token."""
        out = []
        for u in range(self.num_states):
            for v, ids in self.groups(u):
                mask = np.zeros(self.vocab_size, dtype=bool)
                mask[ids] = True
                out.append((u, v, mask))
        return out

    def reachable_lengths(self, max_len: int) -> np.ndarray:
        """R (max_len + 1, S) bool: R[k, s] = some k tokens lead from s to `final_state` (EOS included).

        This is what guarantees compliance: a token is allowed only if its next state can still finish within the
        remaining budget. Computed once up to the largest `max_len` asked for.
        """
        reach = self._reach  # one read: a concurrent request (DFAs are shared) may replace it meanwhile
        if reach is None or reach.shape[0] < max_len + 1:
            adj = np.zeros((self.num_states, self.num_states), dtype=np.int32)  # adj[u, v] = 1: a token leads u -> v
            for u in range(self.num_states):
                for v, _ in self.groups(u):
                    adj[u, v] = 1
            reach = np.zeros((max_len + 1, self.num_states), dtype=bool)
            reach[0, self.final_state] = True
            for k in range(1, max_len + 1):
                reach[k] = (adj @ reach[k - 1].astype(np.int32)) > 0
            if self._reach is None or self._reach.shape[0] < reach.shape[0]:  # keep the longest
                self._reach = reach
        return reach[: max_len + 1]

    def min_tokens_to_finish(self) -> np.ndarray:
        """(S,) fewest tokens (EOS included) from each state to `final_state`; a large number if impossible."""
        s = self.num_states
        dist = np.full(s, np.iinfo(np.int32).max, dtype=np.int64)
        dist[self.final_state] = 0
        preds: list[list[int]] = [[] for _ in range(s)]
        for u in range(s):
            for v, _ in self.groups(u):
                preds[v].append(u)
        frontier = [self.final_state]
        while frontier:
            nxt = []
            for v in frontier:
                for u in preds[v]:
                    if dist[u] > dist[v] + 1:
                        dist[u] = dist[v] + 1
                        nxt.append(u)
            frontier = nxt
        return dist

    def check_budget(self, max_new_tokens: int, min_new_tokens: int = 0) -> None:
        """Raise FormatBudgetError unless some output of length in [min + 1, max] tokens (EOS included) exists."""
        if min_new_tokens >= max_new_tokens:
            raise FormatBudgetError(
                f"min_new_tokens ({min_new_tokens}) must be below max_new_tokens ({max_new_tokens}): "
                "the budget counts the closing EOS too"
            )
        reach = self.reachable_lengths(max_new_tokens)
        if not reach[min_new_tokens + 1 : max_new_tokens + 1, self.initial_state].any():
            shortest = int(self.min_tokens_to_finish()[self.initial_state])
            raise FormatBudgetError(
                f"the format needs at least {shortest} tokens (EOS included) but max_tokens is {max_new_tokens}"
                + (f" with min_new_tokens {min_new_tokens}" if min_new_tokens else "")
                + ": raise max_tokens or simplify the format"
            )


# --------------------------------------------------------------------------- building
def build_token_dfa(
    automaton: ByteAutomaton, vocab: TokenVocabulary, *, max_states: int = DEFAULT_MAX_STATES, key: str = ""
) -> TokenDFA:
    """Walk every token of `vocab` through `automaton` from every reachable state (see the module docstring)."""
    t0 = time.perf_counter()
    if automaton.initial == DEAD:
        raise UnsatisfiableFormatError(f"no string satisfies the format {key}")
    walker = _TokenWalker(automaton, vocab)
    index = {automaton.initial: 0}  # byte state -> token-DFA state
    order = [automaton.initial]
    rows: list[np.ndarray] = []
    frontier = [automaton.initial]
    while frontier:
        nxt_bytes = walker.walk(np.array(frontier, dtype=np.int32))  # (F, V) byte states, -1 dead
        new = [int(b) for b in np.unique(nxt_bytes[nxt_bytes >= 0]) if int(b) not in index]
        for b in new:
            index[b] = len(order)
            order.append(b)
        if len(order) + 1 > max_states:
            raise FormatTooLargeError(
                f"the format {key} needs more than {max_states} token-level states: shorten bounded wildcards "
                "(<free:N>), choices or JSON keys"
            )
        rows.append(nxt_bytes)
        frontier = new
    n = len(order)
    lookup = np.full(automaton.num_states + 1, DEAD, dtype=np.int32)  # byte state -> token state; [-1] stays dead
    for b, i in index.items():
        lookup[b] = i
    table = np.full((n + 1, vocab.size), DEAD, dtype=np.int32)
    table[:n] = lookup[np.concatenate(rows, axis=0)]  # rows came out in discovery order, like `order`
    accepting = np.zeros(n + 1, dtype=bool)
    accepting[:n] = automaton.accepting[np.array(order)]
    final = n
    for eos in vocab.eos_token_ids:
        table[:n, eos] = np.where(accepting[:n], final, DEAD)
    choice_states = np.zeros(n + 1, dtype=bool)
    choice_states[:n] = automaton.choice_points()[np.array(order)]
    dfa = TokenDFA(table, accepting, 0, final, vocab.eos_token_ids, key=key, choice_states=choice_states)
    if dfa.min_tokens_to_finish()[0] >= np.iinfo(np.int32).max:
        raise UnsatisfiableFormatError(
            f"the format {key} cannot be written with this tokenizer's vocabulary: check its characters"
        )
    log.info(
        "token DFA for %s: %d states over %d tokens in %.3f s",
        key or "format",
        n + 1,
        vocab.size,
        time.perf_counter() - t0,
    )
    return dfa


@dataclass(frozen=True)
class _TokenBytes:
    """All tokens' bytes, sorted longest first and padded (built once per vocabulary)."""

    ids: np.ndarray  # (U,) token ids of the usable tokens, longest first
    data: np.ndarray  # (U, Lmax) uint8, zero-padded
    active: tuple[int, ...]  # active[j]: how many tokens have more than j bytes (a prefix of `ids`)
    vocab_size: int


_TOKEN_BYTES: OrderedDict[str, _TokenBytes] = OrderedDict()
_LOCK = threading.Lock()  # guards the module caches (the HTTP service compiles formats from several threads)


def _token_bytes(vocab: TokenVocabulary) -> _TokenBytes:
    with _LOCK:
        if vocab.fingerprint in _TOKEN_BYTES:
            return _TOKEN_BYTES[vocab.fingerprint]
    usable = [i for i, b in enumerate(vocab.token_bytes) if b]  # special and empty tokens never walk
    lengths = np.array([len(vocab.token_bytes[i]) for i in usable], dtype=np.int64)
    sort = np.argsort(-lengths, kind="stable")
    ids = np.array(usable, dtype=np.int64)[sort]
    lengths = lengths[sort]
    max_len = int(lengths[0]) if len(lengths) else 0
    # One flat buffer scattered into the padded matrix: no per-token numpy call.
    flat = np.frombuffer(b"".join(vocab.token_bytes[i] or b"" for i in ids), dtype=np.uint8)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    cols = np.arange(max_len)
    mask = cols[None, :] < lengths[:, None]  # (U, Lmax)
    data = np.zeros((len(ids), max_len), dtype=np.uint8)
    data[mask] = flat[(starts[:, None] + cols[None, :])[mask]]
    active = tuple(int((lengths > j).sum()) for j in range(max_len))
    out = _TokenBytes(ids, data, active, vocab.size)
    with _LOCK:
        _TOKEN_BYTES[vocab.fingerprint] = out
        while len(_TOKEN_BYTES) > 4:
            _TOKEN_BYTES.popitem(last=False)
    return out


class _TokenWalker:
    """Vectorised walk of every token through a byte automaton."""

    def __init__(self, automaton: ByteAutomaton, vocab: TokenVocabulary) -> None:
        n_bytes = automaton.num_states
        # An extra all-dead row lets -1 flow through the gathers without branching.
        table = np.where(automaton.table >= 0, automaton.table, n_bytes).astype(np.int32)
        self.table = np.vstack([table, np.full((1, 256), n_bytes, dtype=np.int32)])  # (N + 1, 256)
        self.dead = n_bytes
        self.tokens = _token_bytes(vocab)

    def walk(self, starts: np.ndarray) -> np.ndarray:
        """(F,) byte states -> (F, V) byte states after each token, -1 where the token is not allowed."""
        tb = self.tokens
        cur = np.repeat(starts[:, None], len(tb.ids), axis=1)  # (F, U)
        for j, n in enumerate(tb.active):
            cur[:, :n] = self.table[cur[:, :n], tb.data[None, :n, j]]
        out = np.full((len(starts), tb.vocab_size), DEAD, dtype=np.int32)
        out[:, tb.ids] = np.where(cur == self.dead, DEAD, cur)
        return out


# --------------------------------------------------------------------------- cached compile
_DFA_CACHE: OrderedDict[tuple[str, str, int], TokenDFA] = OrderedDict()
_DFA_CACHE_SIZE = 16


def compile_token_dfa(
    fmt: Format | str,
    vocab: TokenVocabulary,
    *,
    max_states: int = DEFAULT_MAX_STATES,
    compile_chars: Callable[[Format], CharAutomaton] | None = None,
) -> TokenDFA:
    """Format (object or spec string) -> token DFA over `vocab`, LRU-cached by (format, vocabulary).

    `compile_chars` builds the character automaton on a cache miss: by default `compile_format`, in this process
    (trusted formats); the service passes the deadline-bound child of `bounded.py`.
    """
    fmt = parse_format(fmt)
    cache_key = (fmt.key, vocab.fingerprint, max_states)
    with _LOCK:
        if cache_key in _DFA_CACHE:
            _DFA_CACHE.move_to_end(cache_key)
            return _DFA_CACHE[cache_key]
    automaton = _byte_automaton(fmt) if compile_chars is None else compile_chars(fmt).to_bytes()
    dfa = build_token_dfa(automaton, vocab, max_states=max_states, key=fmt.key)
    with _LOCK:
        dfa = _DFA_CACHE.setdefault(cache_key, dfa)  # another thread may have built it meanwhile: keep one
        _DFA_CACHE.move_to_end(cache_key)
        while len(_DFA_CACHE) > _DFA_CACHE_SIZE:
            _DFA_CACHE.popitem(last=False)
    return dfa


@functools.lru_cache(maxsize=64)
def _byte_automaton(fmt: Format) -> ByteAutomaton:
    return compile_format(fmt).to_bytes()
