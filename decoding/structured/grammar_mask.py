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
    does not allow next to -inf. One per request: it follows one sequence. Unlike Deco-G's masks it does not know
    the token budget, so an answer cut by `max_tokens` may stop mid-structure (`finish_reason: length`)."""

    def __init__(self, grammar: str, vocab: TokenVocabulary) -> None:
        self.vocab_size = vocab.size
        self.matcher = llguidance.LLMatcher(grammar_tokenizer(vocab), grammar, limits=LIMITS, log_level=0)
        self._raise_if_failed()
        self._bitmask = llg_numpy.allocate_token_bitmask(1, vocab.size)
        self._prompt_len: int | None = None
        self._consumed = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for token in self._new_tokens(input_ids):
            self.matcher.consume_token(token)
        llg_numpy.fill_next_token_bitmask(self.matcher, self._bitmask, 0)
        self._raise_if_failed()
        allowed = np.unpackbits(self._bitmask[0].view(np.uint8), bitorder="little")[: self.vocab_size]
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
