"""A hard token mask from an llguidance grammar: the exact enforcement behind `response_format` and tool calls
wherever Deco-G's automaton does not reach (nested JSON, arrays, `$ref`, tool-call envelopes).

llguidance (guidance-ai/llguidance) computes a token mask from a context-free grammar with an Earley parser over a
lazily built lexer; JSONSchemaBench (Geng et al. 2025, arXiv 2501.10868) measured it with the widest JSON Schema
coverage and a p99 mask time of about 0.5 ms. It was chosen over outlines-core (already a dependency, as Deco-G's
external reference) because outlines-core compiles a schema to one regex: nesting is cut at a fixed depth,
unsupported keywords are dropped silently, and large schemas take seconds to index. llguidance refuses a keyword it
cannot enforce by name, which is what failing closed needs. `prunekit eval schemas` measures both side by side.

Grammars come from requests, so every matcher runs under `LIMITS` (llguidance's fuel: bounded work per token and
per grammar), and a grammar is checked once (`check_grammar`) before a request takes a place in the queue.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import llguidance
import llguidance.numpy as llg_numpy
import numpy as np
import torch

from prunekit.decoding.decog.errors import FormatSpecError, GuidanceError
from prunekit.decoding.decog.vocab import TokenVocabulary
from prunekit.decoding.structured.closing import LexState, closing_tokens, lengtheners, token_moves

__all__ = ["LIMITS", "GrammarMaskProcessor", "check_grammar", "grammar_tokenizer"]

# llguidance's defaults, tightened where a hostile grammar would spend server time: at most ~10 ms of lexer work
# and ~2.5 ms of parser work per token, ~20 ms building a grammar's regexes, a few MB of lexer states.
LIMITS = llguidance.LLParserLimits(
    initial_lexer_fuel=1_000_000,
    step_lexer_fuel=140_000,
    step_max_items=50_000,
    max_lexer_states=50_000,
    max_grammar_size=200_000,
)

_TOKENIZERS: dict[str, llguidance.LLTokenizer] = {}
_LOCK = threading.Lock()


class _VocabularyTokenizer:
    """What `llguidance.TokenizerWrapper` reads from a tokenizer, from a `TokenVocabulary`: every token's bytes
    (special tokens marked with llguidance's 0xFF prefix, so grammars never produce them as text) and a greedy
    longest-match encoder. llguidance encodes text only to force a grammar's fixed strings as tokens; the masks it
    computes do not depend on the encoder."""

    def __init__(self, vocab: TokenVocabulary) -> None:
        self.eos_token_id = vocab.eos_token_ids[0]
        self.bos_token_id = None
        self.tokens = [b if b is not None else b"\xff<|special_%d|>" % i for i, b in enumerate(vocab.token_bytes)]
        self.special_token_ids = [i for i, b in enumerate(vocab.token_bytes) if b is None]
        self._ids = {b: i for i, b in enumerate(vocab.token_bytes) if b}
        self._longest = max((len(b) for b in self._ids), default=1)

    def __call__(self, text: bytes) -> list[int]:
        ids, pos = [], 0
        while pos < len(text):
            for size in range(min(self._longest, len(text) - pos), 0, -1):
                token = self._ids.get(text[pos : pos + size])
                if token is not None:
                    ids.append(token)
                    pos += size
                    break
            else:  # a byte no token starts with: left out rather than guessed
                pos += 1
        return ids


def grammar_tokenizer(vocab: TokenVocabulary) -> llguidance.LLTokenizer:
    """llguidance's view of `vocab` (about 1 s to build for a 49k vocabulary, so built once per vocabulary)."""
    with _LOCK:
        tokenizer = _TOKENIZERS.get(vocab.fingerprint)
        if tokenizer is None:
            wrapper = llguidance.TokenizerWrapper(_VocabularyTokenizer(vocab))
            tokenizer = llguidance.LLTokenizer(wrapper, eos_token=list(vocab.eos_token_ids))
            _TOKENIZERS[vocab.fingerprint] = tokenizer
        return tokenizer


def check_grammar(grammar: str, vocab: TokenVocabulary) -> None:
    """Raise `FormatSpecError` with llguidance's own words when `grammar` cannot be enforced over `vocab`: an
    unimplemented JSON Schema keyword, an unknown string format, a grammar over the limits."""
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
        grammar, grammar_tokenizer(vocab), limits=LIMITS
    )
    if is_error:
        raise FormatSpecError(f"the output format cannot be enforced: {messages[0] if messages else 'invalid'}")


class GrammarMaskProcessor:
    """A transformers-style logits processor `(input_ids, scores) -> scores` that sets every token the grammar
    does not allow next to -inf. One per request: it follows one sequence.

    Given the answer's token budget (`max_new_tokens`), it also makes sure the answer ends inside it: near the
    end it measures how many tokens the shortest way to close needs (`closing.closing_tokens`), and once the
    tokens left are about that many it allows only that way (then end-of-sequence), so `max_tokens` does not cut
    a structure open. An answer that cannot close in what is left still ends as `length`.
    """

    def __init__(self, grammar: str, vocab: TokenVocabulary, max_new_tokens: int | None = None) -> None:
        self.vocab_size = vocab.size
        self.matcher = llguidance.LLMatcher(grammar_tokenizer(vocab), grammar, limits=LIMITS, log_level=0)
        self._raise_if_failed()
        self._bitmask = llg_numpy.allocate_token_bitmask(1, vocab.size)
        self._prompt_len: int | None = None
        self._consumed = 0
        self._budget = _Budget(vocab, max_new_tokens) if max_new_tokens else None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for token in self._new_tokens(input_ids):
            self.matcher.consume_token(token)
            if self._budget is not None:
                self._budget.followed(token)
        llg_numpy.fill_next_token_bitmask(self.matcher, self._bitmask, 0)
        self._raise_if_failed()
        allowed = np.unpackbits(self._bitmask[0].view(np.uint8), bitorder="little")[: self.vocab_size]
        if self._budget is not None:
            allowed = self._budget.narrow(self.matcher, self._consumed, allowed)
        out = scores.clone()
        row = out[0]
        row[: self.vocab_size][torch.from_numpy(allowed == 0)] = -math.inf
        row[self.vocab_size :] = -math.inf  # ids past the tokenizer's (padding rows of the model's output layer)
        return out

    def is_complete(self) -> bool:
        """Whether the tokens so far form a whole sentence of the grammar."""
        return self.matcher.is_accepting() or self.matcher.is_stopped()

    def _new_tokens(self, input_ids: Any) -> list[int]:
        length = int(input_ids.shape[-1])
        if self._prompt_len is None:
            self._prompt_len = length
            return []
        start = self._prompt_len + self._consumed
        new = [int(t) for t in input_ids[0, start:].tolist()]
        self._consumed += len(new)
        return new

    def _raise_if_failed(self) -> None:
        if self.matcher.is_error():
            error = self.matcher.get_error()
            if "limit" in error.lower() or "fuel" in error.lower():
                raise FormatSpecError(f"the output format is too complex to enforce: {error}")
            raise GuidanceError(f"the grammar mask failed: {error}")


class _Budget:
    """The end of the token budget, for `GrammarMaskProcessor`: when to measure the way to close, and when to
    take it. Measuring walks the grammar (about a mask's time per token of the way), so it runs every
    `_EVERY` tokens, and at every token once the budget left is within twice the last measured way. In that last
    stretch, and after a measure found no way short enough, the answer may no longer open a structure or start a
    new element or key (`lengtheners`) unless nothing else is allowed: one `{` of an object with required keys can
    make the way longer than the budget left, and the model would write on until `max_tokens` cut it open."""

    _EVERY = 16
    _MARGIN = 4  # start closing a few tokens early: one token can open a structure that needs more to close
    # The longest way looked for: a walk costs a mask per token of it, and a request chooses both the schema and
    # max_tokens, so an answer that cannot close in this many tokens is left to end as `length`.
    _LONGEST_WAY = 256

    def __init__(self, vocab: TokenVocabulary, max_new_tokens: int) -> None:
        self.moves = token_moves(vocab)
        self.token_bytes = vocab.token_bytes
        self.eos_ids = np.asarray(vocab.eos_token_ids, dtype=np.int64)
        self.max_new_tokens = max_new_tokens
        self.lex = LexState()  # where the answer so far leaves JSON's lexer
        self.way_len = 0  # the last measured way to close, end-of-sequence included; 0: none found that short
        self.plan: list[int] | None = None  # the way being taken, once closing has begun

    def followed(self, token: int) -> None:
        """Note a token the answer took: the plan's next one, while closing."""
        self.lex = self.lex.after(self.token_bytes[token] or b"")
        if self.plan:
            if token != self.plan[0]:  # another token was chosen (a backend ignoring the mask): measure again
                self.plan = None
                return
            self.plan.pop(0)

    def narrow(self, matcher: llguidance.LLMatcher, produced: int, allowed: np.ndarray) -> np.ndarray:
        """`allowed`, or only the next token of the way to close once the budget calls for it."""
        left = self.max_new_tokens - produced  # tokens this step and the rest may still produce
        if self.plan is None and (produced % self._EVERY == 0 or self._near_end(left)):
            # after a miss (way_len 0), look again at the next regular check, not at every token
            way = closing_tokens(matcher, self.moves, self.lex, limit=min(left, self._LONGEST_WAY))
            self.way_len = 0 if way is None else len(way) + 1
            if way and left <= self.way_len + self._MARGIN:  # (an answer already whole may go on, or end)
                self.plan = way
        if self.plan is None:
            return self._shortening(allowed) if self.way_len == 0 or self._near_end(left) else allowed
        only = np.zeros_like(allowed)
        if self.plan:
            only[self.plan[0]] = 1
        else:  # the way is taken: the answer is whole, and ends here
            eos = self.eos_ids[allowed[self.eos_ids] == 1]
            only[eos[:1] if eos.size else self.eos_ids[:1]] = 1
        return only

    def _near_end(self, left: int) -> bool:
        return left <= 2 * self.way_len + self._MARGIN

    def _shortening(self, allowed: np.ndarray) -> np.ndarray:
        """`allowed` without the tokens that lengthen the way to close, unless those are all it holds. A number is
        ended first: after a digit, more digits only lengthen it, and a comma that ends it (a required key still to
        come) is better than a model writing digits until the budget cuts the answer open."""
        if self.lex.in_number:
            ending = allowed & ~self.moves.digit_first
            allowed = ending if ending.any() else allowed
        kept = allowed & ~lengtheners(self.moves, self.lex)
        return kept if kept.any() else allowed
