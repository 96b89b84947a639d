r"""An external hard-mask reference: the same format enforced by outlines-core, the engine behind Outlines.

The Deco-G evaluation (`eval/decoding.py`, method `outlines`) runs it beside our own `hard_mask`, and the tests
hold our token DFA (`token_dfa.py`) to it, an independent regex-to-token-mask implementation. Two differences
are by design and show up in the figures:

- outlines-core knows nothing of the token budget. It keeps every token that leaves the regex completable at
  some length, so an output cut by `max_tokens` may stop mid-format. Our masks allow only the tokens after which
  the format can still be finished within the budget.
- outlines-core's regexes have no look-arounds, so free text before a pivot (`<free>The answer is <int>`) becomes
  plain `[\s\S]*`: the pivot may also occur inside the free text (how Outlines users write such a pattern), where
  our format stops the free text at the pivot's first occurrence. `outlines_regex` says when this loosening
  applied.

Where the two disagree otherwise, outlines-core (0.2) is the narrower one, never the other way round (the tests
check both directions, with Python's `regex` partial matching as the third opinion):

- It reads a regex leftmost-first: once the text matches, some longer matches become unreachable (`a|ab` never
  gives "ab"; after "8", `\d+(x\d+)?` never allows "x").
- Where a bounded repetition starts, it drops some tokens that end in the middle of a UTF-8 character
  (" \xc2" after "Note:" for `Note: [\s\S]{0,12}`), which a byte-level tokenizer needs for rare characters.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, defaultdict
from typing import Any

import numpy as np
import torch
from outlines_core import Guide, Index, Vocabulary

from prunekit.decoding.decog.errors import FormatSpecError, GuidanceError, VocabularyMismatchError
from prunekit.decoding.decog.formats import Format, OneOf, Pivot, Sequence, Wildcard, parse_format
from prunekit.decoding.decog.vocab import TokenVocabulary

__all__ = ["OutlinesMaskProcessor", "outlines_index", "outlines_regex"]

INDEX_CACHE_SIZE = 32
_VOCABULARIES: dict[str, Vocabulary] = {}
_INDEXES: OrderedDict[tuple[str, str], Index] = OrderedDict()
_LOCK = threading.Lock()


def outlines_regex(fmt: Format | str) -> tuple[str, bool]:
    """The format as a regex outlines-core accepts, and whether it is exact (False: a wildcard before a pivot was
    loosened to plain free text, see the module docstring)."""
    fmt = parse_format(fmt)
    if isinstance(fmt, Sequence):
        pieces, exact = [], True
        for i, part in enumerate(fmt.parts):
            regex, part_exact = outlines_regex(part)
            following = fmt.parts[i + 1] if i + 1 < len(fmt.parts) else None
            if isinstance(part, Wildcard) and part.stop_at_pivot and isinstance(following, Pivot):
                part_exact = False
            pieces.append(regex)
            exact = exact and part_exact
        return "(?:" + "".join(pieces) + ")", exact
    if isinstance(fmt, OneOf):
        branches = [outlines_regex(a) for a in fmt.alternatives]
        return "(?:" + "|".join(r for r, _ in branches) + ")", all(e for _, e in branches)
    return _ascii_classes(fmt.python_regex()), True


# Our formats read \d, \w and \s as ASCII classes (interegular, re.ASCII); outlines-core's Rust regexes read them
# as Unicode classes. Spelled out, the two engines see one language. A negated bracket holding a negated class
# ([^\D]) has no short spelling and keeps the Unicode reading.
_ASCII_CLASSES = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\x0b\\x0c\\r "}


def _ascii_classes(regex: str) -> str:
    r"""`regex` with \d, \w, \s and their negations spelled as explicit ASCII classes."""
    out: list[str] = []
    i = 0
    while i < len(regex):
        if regex[i] == "[":
            end = _class_end(regex, i)
            out.append(_ascii_bracket(regex[i : end + 1]))
            i = end + 1
        elif regex[i] == "\\" and i + 1 < len(regex):
            out.append(_ascii_escape(regex[i + 1]) or regex[i : i + 2])
            i += 2
        else:
            out.append(regex[i])
            i += 1
    return "".join(out)


def _ascii_escape(letter: str) -> str | None:
    r"""\d -> [0-9], \D -> [^0-9] (and \w, \s alike); None for any other escape."""
    if letter in _ASCII_CLASSES:
        return f"[{_ASCII_CLASSES[letter]}]"
    if letter.islower() or letter.lower() not in _ASCII_CLASSES:
        return None
    return f"[^{_ASCII_CLASSES[letter.lower()]}]"


def _class_end(regex: str, start: int) -> int:
    """Index of the "]" closing the bracket opened at `start` (a "]" first in the bracket is a literal)."""
    j = start + 1
    j += regex[j : j + 1] == "^"
    j += regex[j : j + 1] == "]"
    while j < len(regex) and regex[j] != "]":
        j += 2 if regex[j] == "\\" else 1
    if j >= len(regex):
        raise FormatSpecError(f"unterminated character class in {regex!r}")
    return j


def _ascii_bracket(bracket: str) -> str:
    r"""One bracket `[...]`: positive class escapes inlined; negated ones ([\s\S]) become an alternation."""
    negated = bracket.startswith("[^")
    body = bracket[2 if negated else 1 : -1]
    kept: list[str] = []
    excluded: list[str] = []  # the ASCII sets of negated escapes in the bracket
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            letter = body[i + 1]
            if letter in _ASCII_CLASSES:
                kept.append(_ASCII_CLASSES[letter])
            elif letter.isupper() and letter.lower() in _ASCII_CLASSES:
                excluded.append(_ASCII_CLASSES[letter.lower()])
            else:
                kept.append(body[i : i + 2])
            i += 2
        else:
            kept.append(body[i])
            i += 1
    if not excluded:
        return ("[^" if negated else "[") + "".join(kept) + "]"
    if negated:
        return bracket
    parts = ([f"[{''.join(kept)}]"] if kept else []) + [f"[^{e}]" for e in excluded]
    return "(?:" + "|".join(parts) + ")"


def _vocabulary(vocab: TokenVocabulary) -> Vocabulary:
    """outlines-core's view of `vocab`: token bytes -> ids, special tokens left out, the first EOS as its EOS."""
    with _LOCK:
        if vocab.fingerprint not in _VOCABULARIES:
            by_bytes: dict[bytes, list[int]] = defaultdict(list)
            for token_id, data in enumerate(vocab.token_bytes):
                if data and token_id not in vocab.eos_token_ids:
                    by_bytes[data].append(token_id)
            _VOCABULARIES[vocab.fingerprint] = Vocabulary(vocab.eos_token_ids[0], dict(by_bytes))
        return _VOCABULARIES[vocab.fingerprint]


def outlines_index(regex: str, vocab: TokenVocabulary) -> Index:
    """outlines-core's token index of `regex` over `vocab` (LRU-cached by regex and vocabulary)."""
    key = (regex, vocab.fingerprint)
    with _LOCK:
        if key in _INDEXES:
            _INDEXES.move_to_end(key)
            return _INDEXES[key]
    try:
        index = Index(regex, _vocabulary(vocab))
    except (ValueError, RuntimeError) as exc:
        raise FormatSpecError(f"outlines-core cannot compile the format's regex {regex!r}: {exc}") from exc
    with _LOCK:
        _INDEXES[key] = index
        while len(_INDEXES) > INDEX_CACHE_SIZE:
            _INDEXES.popitem(last=False)
    return index


class OutlinesMaskProcessor:
    """A LogitsProcessor (the `HardMaskProcessor` contract) that masks with outlines-core, budget-blind.

    One processor per request: the first call fixes the prompt length, later calls bring the tokens generated since.
    """

    def __init__(self, fmt: Format | str, vocab: TokenVocabulary) -> None:
        self.regex, self.exact = outlines_regex(fmt)
        if not vocab.eos_token_ids:
            raise VocabularyMismatchError("the vocabulary has no EOS token: a format needs one to end")
        self._guide = Guide(outlines_index(self.regex, vocab))
        self._vocab_size = vocab.size
        self._eos = list(vocab.eos_token_ids)
        self._words = torch.zeros((vocab.size + 31) // 32, dtype=torch.int32)  # outlines-core's bitmask
        self._prompt_len: int | None = None
        self._generated = 0
        self._finished = False

    def allowed(self) -> np.ndarray:
        """(V,) bool: the tokens outlines-core allows now (every EOS id when the format may end here)."""
        self._words.zero_()
        self._guide.write_mask_into(self._words.data_ptr(), self._words.numel(), self._words.element_size())
        bits = np.unpackbits(self._words.numpy().view(np.uint8), bitorder="little")[: self._vocab_size]
        allowed = bits.astype(bool)
        if allowed[self._eos[0]]:
            allowed[self._eos] = True
        return allowed

    def advance(self, token: int) -> None:
        """Step past `token` (an EOS ends the output: from then on, only EOS)."""
        if self._finished:
            return
        if token in self._eos:
            self._finished = True
            return
        try:
            self._guide.advance(token, return_tokens=False)  # the list of allowed ids costs ~1 ms at V = 49k
        except ValueError as exc:
            raise GuidanceError(
                f"token {token} at step {self._generated} is not allowed by the format: the decoding loop must "
                "apply the processor's scores before choosing a token"
            ) from exc
        self._generated += 1

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.dim() != 2 or input_ids.shape[0] != 1 or scores.dim() != 2 or scores.shape[0] != 1:
            raise GuidanceError(
                f"format masks run one sequence at a time: got input_ids {tuple(input_ids.shape)}, "
                f"scores {tuple(scores.shape)}"
            )
        if scores.shape[1] < self._vocab_size:
            raise VocabularyMismatchError(f"the model scores {scores.shape[1]} tokens, the format {self._vocab_size}")
        if self._prompt_len is None:
            self._prompt_len = int(input_ids.shape[1])
        else:
            for token in input_ids[0, self._prompt_len + self._generated :].tolist():
                self.advance(int(token))
        out = torch.full_like(scores, -math.inf)
        if self._finished:
            out[0, self._eos] = 0.0
            return out
        allowed = torch.from_numpy(self.allowed()).to(scores.device)
        out[0, : self._vocab_size] = torch.where(allowed, scores[0, : self._vocab_size], -math.inf)
        return out

    def stats(self) -> dict[str, Any]:
        return {"steps": self._generated, "exact_regex": self.exact}
