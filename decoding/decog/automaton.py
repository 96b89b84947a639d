"""Character-level automata and their exact UTF-8 byte-level expansion.

A format compiles (in `formats.py`) to an `interegular` FSM over characters. Tokens of a byte-level BPE
(GPT-2 style, as SmolLM2's) are byte strings, and many are not whole UTF-8 characters ("Ã" + "©" = "é"), so the
token walk of `token_dfa.py` runs over bytes. `CharAutomaton.to_bytes` expands the character automaton into a
byte automaton whose states are a character state plus the bytes of a character begun but not finished:

- ASCII bytes step the character automaton at once;
- a non-ASCII character named by the format (e.g. "é" in a choice) is tracked byte by byte (exact prefix states);
- any other character follows the state's "anything else" edge: one shared chain of states per target counts
  the continuation bytes still due, with the lead-byte-specific ranges of RFC 3629 (no overlong forms, no
  surrogates), so only valid UTF-8 is ever produced.

States that cannot reach acceptance are removed (their transitions become -1): a live byte state always has a
completion, which is what lets the guidance mask promise compliance. Method from Deco-G (arXiv 2510.03595) and
Ctrl-G (joshuacnf/Ctrl-G), where formats become DFAs over the LLM's vocabulary.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

__all__ = ["ByteAutomaton", "CharAutomaton"]

log = logging.getLogger(__name__)

DEAD = -1
MAX_CHOICE_STRINGS = 256  # a loop-free stretch with more ways through it is free text (a bounded wildcard)


@dataclass(frozen=True)
class CharAutomaton:
    """A DFA over Unicode characters, trimmed to live states (every state can still reach acceptance).

    `transitions[q]` maps the characters the format names explicitly (`alphabet`) to their targets; any character
    outside `alphabet` goes to `default[q]` (None: dead). A character in `alphabet` without an entry is dead.
    """

    initial: int
    accepting: frozenset[int]
    transitions: tuple[dict[str, int], ...]
    default: tuple[int | None, ...]
    alphabet: frozenset[str]

    @property
    def num_states(self) -> int:
        return len(self.transitions)

    @property
    def is_empty(self) -> bool:
        """True when no string is accepted (the initial state was trimmed away)."""
        return self.initial == DEAD

    def step(self, state: int, ch: str) -> int:
        if state == DEAD:
            return DEAD
        if ch in self.alphabet:
            return self.transitions[state].get(ch, DEAD)
        nxt = self.default[state]
        return DEAD if nxt is None else nxt

    def accepts(self, text: str) -> bool:
        state = self.initial
        for ch in text:
            state = self.step(state, ch)
            if state == DEAD:
                return False
        return state in self.accepting

    @classmethod
    def from_fsm(cls, fsm: Any) -> CharAutomaton:
        """From an `interegular.fsm.FSM`: renumber the states, drop dead ones and unreachable ones."""
        from interegular.fsm import anything_else

        alphabet = fsm.alphabet
        keys_of: dict[Any, list[str]] = {}
        other_key = None
        for symbol, key in alphabet.items():
            if symbol is anything_else:
                other_key = key
            else:
                keys_of.setdefault(key, []).append(symbol)
        states = sorted(fsm.states)
        # Live = can reach a final state (reverse search).
        reverse: dict[Any, set[Any]] = {s: set() for s in states}
        for s, row in fsm.map.items():
            for _key, t in row.items():
                reverse.setdefault(t, set()).add(s)
        live = set(fsm.finals)
        queue = deque(live)
        while queue:
            t = queue.popleft()
            for s in reverse.get(t, ()):
                if s not in live:
                    live.add(s)
                    queue.append(s)
        if fsm.initial not in live:
            return cls(DEAD, frozenset(), (), (), frozenset())
        # Reachable from the initial state through live states only.
        order: dict[Any, int] = {fsm.initial: 0}
        queue = deque([fsm.initial])
        while queue:
            s = queue.popleft()
            for t in fsm.map.get(s, {}).values():
                if t in live and t not in order:
                    order[t] = len(order)
                    queue.append(t)
        transitions: list[dict[str, int]] = [{} for _ in order]
        default: list[int | None] = [None] * len(order)
        for s, i in order.items():
            for key, t in fsm.map.get(s, {}).items():
                if t not in order:
                    continue
                if key == other_key:
                    default[i] = order[t]
                for ch in keys_of.get(key, ()):
                    transitions[i][ch] = order[t]
        named = frozenset(ch for chars in keys_of.values() for ch in chars)
        accepting = frozenset(order[s] for s in fsm.finals if s in order)
        return cls(0, accepting, tuple(transitions), tuple(default), named)

    def to_bytes(self) -> ByteAutomaton:
        """The exact UTF-8 byte-level automaton (see the module docstring). States 0..n-1 are the char states."""
        return _ByteBuilder(self).build()


@dataclass
class ByteAutomaton:
    """A DFA over bytes: `table` (N, 256) int32 with -1 for dead; every state with a row entry is live."""

    table: np.ndarray  # (N, 256) int32
    accepting: np.ndarray  # (N,) bool
    initial: int
    char_states: int  # states 0..char_states-1 are character states (no pending bytes)

    @property
    def num_states(self) -> int:
        return int(self.table.shape[0])

    def walk(self, data: bytes, state: int | None = None) -> int:
        s = self.initial if state is None else state
        for b in data:
            if s == DEAD:
                return DEAD
            s = int(self.table[s, b])
        return s

    def accepts(self, data: bytes) -> bool:
        s = self.walk(data)
        return s != DEAD and bool(self.accepting[s])

    def choice_points(self, max_strings: int = MAX_CHOICE_STRINGS) -> np.ndarray:
        """(N,) bool: states that open a choice among a few fixed strings.

        Free material is a loop (a wildcard, digits, JSON whitespace) or a loop-free stretch with more than
        `max_strings` ways through it (a bounded wildcard). What is left is fixed material. Where a loop-free
        stretch holds 2 to `max_strings` strings (an enum's options, the sign-or-digit that opens a number), the
        format offers a choice among them. Each state of the stretch up to the branch is a choice point, the
        stretch's first state included. A string ends at an accepting state or where the stretch enters a loop.
        """
        n = self.num_states
        graph = nx.DiGraph()
        graph.add_nodes_from(range(n))
        src, byte = np.nonzero(self.table >= 0)
        graph.add_edges_from(set(zip(src.tolist(), self.table[src, byte].tolist(), strict=True)))
        looped = np.zeros(n, dtype=bool)
        for component in nx.strongly_connected_components(graph):
            member = next(iter(component))
            if len(component) > 1 or graph.has_edge(member, member):  # a cycle, or a state looping on itself
                looped[list(component)] = True
        # strings[q]: distinct byte strings from q to the end of its loop-free stretch, capped at max_strings + 1
        strings = np.zeros(n, dtype=np.int64)
        order = nx.topological_sort(graph.subgraph(np.flatnonzero(~looped).tolist()))
        for state in reversed(list(order)):  # successors first (the loop-free part is acyclic)
            row = self.table[state]
            targets = row[row >= 0]
            count = int(self.accepting[state]) + int(np.where(looped[targets], 1, strings[targets]).sum())
            strings[state] = min(count, max_strings + 1)
        return ~looped & (strings >= 2) & (strings <= max_strings)


def _seq_len(lead: int) -> int:
    """Length of the UTF-8 sequence a lead byte starts (0: not a valid lead byte)."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def _next_byte_range(prefix: bytes) -> range:
    """Bytes that may follow a proper prefix of a UTF-8 character (RFC 3629 table 3-7)."""
    if len(prefix) == 1:
        lead = prefix[0]
        if lead == 0xE0:
            return range(0xA0, 0xC0)  # no overlong 3-byte forms
        if lead == 0xED:
            return range(0x80, 0xA0)  # no surrogates
        if lead == 0xF0:
            return range(0x90, 0xC0)  # no overlong 4-byte forms
        if lead == 0xF4:
            return range(0x80, 0x90)  # nothing above U+10FFFF
    return range(0x80, 0xC0)


_SPECIAL_LEADS = frozenset({0xE0, 0xED, 0xF0, 0xF4})
_LEAD_BYTES = [b for b in range(0x80, 0x100) if _seq_len(b) > 1]


class _ByteBuilder:
    """Breadth-first construction of the byte automaton, then trimming to live states."""

    def __init__(self, char: CharAutomaton) -> None:
        self.char = char
        self.ids: dict[tuple[Any, ...], int] = {}
        self.keys: list[tuple[Any, ...]] = []
        for q in range(char.num_states):
            self._id(("c", q))
        # Proper prefixes of the named non-ASCII characters: they need exact tracking.
        self.named_prefixes: set[bytes] = set()
        for ch in char.alphabet:
            enc = ch.encode("utf-8")
            for i in range(1, len(enc)):
                self.named_prefixes.add(enc[:i])

    def _id(self, key: tuple[Any, ...]) -> int:
        if key not in self.ids:
            self.ids[key] = len(self.keys)
            self.keys.append(key)
        return self.ids[key]

    def _after(self, q: int, data: bytes) -> int:
        """Byte state after reading `data` (the start of one character) in char state q; -1 if impossible."""
        length = _seq_len(data[0])
        if len(data) == length:
            t = self.char.step(q, data.decode("utf-8"))
            return DEAD if t == DEAD else self.ids[("c", t)]
        if data in self.named_prefixes:
            return self._id(("p", q, data))
        target = self.char.default[q]
        if target is None:
            return DEAD
        # No named character starts with these bytes: every completion is "anything else".
        # Only four lead bytes restrict the byte after them; all other leads share states (fewer token states).
        lead = data[0] if len(data) == 1 and data[0] in _SPECIAL_LEADS else None
        return self._id(("g", target, length - len(data), lead))

    def build(self) -> ByteAutomaton:
        rows: list[np.ndarray] = []
        i = 0
        while i < len(self.keys):  # keys grows while we go: a breadth-first walk over new states
            key = self.keys[i]
            row = np.full(256, DEAD, dtype=np.int32)
            kind = key[0]
            if kind == "c":
                q = key[1]
                for b in range(0x80):
                    t = self.char.step(q, chr(b))
                    row[b] = DEAD if t == DEAD else t
                for b in _LEAD_BYTES:
                    row[b] = self._after(q, bytes([b]))
            elif kind == "p":
                _, q, prefix = key
                for b in _next_byte_range(prefix):
                    row[b] = self._after(q, prefix + bytes([b]))
            else:  # "g": `remaining` continuation bytes due, then the char state `target`
                _, target, remaining, lead = key
                allowed = _next_byte_range(bytes([lead])) if lead is not None else range(0x80, 0xC0)
                nxt = self.ids[("c", target)] if remaining == 1 else self._id(("g", target, remaining - 1, None))
                for b in allowed:
                    row[b] = nxt
            rows.append(row)
            i += 1
        table = np.stack(rows) if rows else np.zeros((0, 256), dtype=np.int32)
        n = len(rows)
        accepting = np.zeros(n, dtype=bool)
        for q in self.char.accepting:
            accepting[q] = True
        table = _trim_dead(table, accepting)
        initial = self.char.initial if self.char.initial != DEAD else DEAD
        if initial != DEAD and not (accepting[initial] or (table[initial] != DEAD).any()):
            initial = DEAD
        log.debug("byte automaton: %d states from %d char states", n, self.char.num_states)
        return ByteAutomaton(table, accepting, initial, self.char.num_states)


def _trim_dead(table: np.ndarray, accepting: np.ndarray) -> np.ndarray:
    """Point every transition into a state that cannot reach acceptance at -1 (fixpoint over the table)."""
    n = table.shape[0]
    live = accepting.copy()
    while True:
        tgt = np.where(table >= 0, table, 0)
        reach = ((table >= 0) & live[tgt]).any(axis=1)
        new = live | reach
        if (new == live).all():
            break
        live = new
    out = table.copy()
    out[(table >= 0) & ~live[np.where(table >= 0, table, 0)]] = DEAD
    out[~live] = DEAD
    if n and not live.all():
        log.debug("trimmed %d dead byte states", int((~live).sum()))
    return out
