"""The exact bytes of every token of an LLM tokenizer: what the token-level DFA walks over.

Byte-level BPE tokenizers (GPT-2 style; SmolLM2 uses one) store each token as a string of printable stand-ins for
bytes (" " is "Ġ", the lead byte of "é" is "Ã"); the GPT-2 byte table maps them back, so a token that holds half
of a UTF-8 character gets its exact bytes rather than a replacement character. SentencePiece vocabularies ("▁"
for a space, "<0x0A>" byte tokens) are mapped too; anything else falls back to decoding each id on its own.
Special tokens (chat markers, EOS) get no bytes: they never appear inside formatted text; EOS ids are recorded
separately because the format ends with them. Part of Deco-G guidance (arXiv 2510.03595; Ctrl-G, joshuacnf/Ctrl-G).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prunekit.decoding.decog.errors import VocabularyMismatchError

__all__ = ["TokenVocabulary", "gpt2_byte_decoder"]

log = logging.getLogger(__name__)

_SP_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_CACHE: weakref.WeakKeyDictionary[Any, TokenVocabulary] = weakref.WeakKeyDictionary()


@functools.lru_cache(maxsize=1)
def gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character -> byte value (the inverse of `bytes_to_unicode`)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    byte_values, chars = printable[:], printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            byte_values.append(b)
            chars.append(256 + n)  # bytes without a printable glyph are shifted above U+00FF
            n += 1
    return {chr(c): b for b, c in zip(byte_values, chars, strict=True)}


@dataclass(frozen=True)
class TokenVocabulary:
    """`token_bytes[i]`: the bytes token i stands for, None for special tokens; `eos_token_ids` end a format."""

    token_bytes: tuple[bytes | None, ...]
    eos_token_ids: tuple[int, ...]
    fingerprint: str

    @property
    def size(self) -> int:
        return len(self.token_bytes)

    @classmethod
    def from_bytes(cls, token_bytes: Sequence[bytes | None], eos_token_ids: Iterable[int]) -> TokenVocabulary:
        eos = tuple(sorted({int(i) for i in eos_token_ids}))
        if not eos:
            raise VocabularyMismatchError("at least one EOS token id is needed: formats end with EOS")
        if any(not 0 <= i < len(token_bytes) for i in eos):
            raise VocabularyMismatchError(f"EOS ids {eos} lie outside the vocabulary of {len(token_bytes)} tokens")
        tb = tuple(None if i in eos else b for i, b in enumerate(token_bytes))
        h = hashlib.sha1()
        for b in tb:
            h.update(b"\xff\xfe" if b is None else len(b).to_bytes(2, "little") + b)
        h.update(repr(eos).encode())
        return cls(tb, eos, h.hexdigest())

    @classmethod
    def from_strings(cls, tokens: Sequence[str | None], eos_token_ids: Iterable[int]) -> TokenVocabulary:
        """A vocabulary given as plain strings (tests, toy tokenizers)."""
        return cls.from_bytes([None if t is None else t.encode("utf-8") for t in tokens], eos_token_ids)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, eos_token_ids: Iterable[int] | None = None) -> TokenVocabulary:
        """Exact token bytes of a transformers tokenizer (cached per tokenizer object).

        `eos_token_ids` defaults to the tokenizer's `eos_token_id`.
        """
        if eos_token_ids is None:
            if tokenizer.eos_token_id is None:
                raise VocabularyMismatchError("the tokenizer has no eos_token_id: pass eos_token_ids")
            eos_token_ids = [tokenizer.eos_token_id]
        eos = tuple(sorted(set(eos_token_ids)))
        try:
            cached = _CACHE.get(tokenizer)
        except TypeError:
            cached = None
        if cached is not None and cached.eos_token_ids == eos:
            return cached
        vocab = cls.from_bytes(_tokenizer_bytes(tokenizer), eos)
        with contextlib.suppress(TypeError):
            _CACHE[tokenizer] = vocab
        return vocab


def _tokenizer_bytes(tokenizer: Any) -> list[bytes | None]:
    size = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = {}
    for i, tok in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items():
        if getattr(tok, "special", False):
            special.add(int(i))
        else:
            added[int(i)] = str(getattr(tok, "content", tok)).encode("utf-8")
    kind = _vocab_kind(tokenizer, pieces, special)
    log.debug("tokenizer vocabulary of %d tokens read as %s", size, kind)
    decoder = gpt2_byte_decoder()
    out: list[bytes | None] = []
    for i, piece in enumerate(pieces):
        if i in special or piece is None:
            out.append(None)
        elif i in added:
            out.append(added[i])
        elif kind == "byte_level":
            try:
                out.append(bytes(decoder[c] for c in piece))
            except KeyError:
                out.append(piece.encode("utf-8"))  # a token outside the byte table: take its text
        elif kind == "sentencepiece":
            m = _SP_BYTE.match(piece)
            out.append(bytes([int(m.group(1), 16)]) if m else piece.replace("▁", " ").encode("utf-8"))
        else:
            out.append(tokenizer.decode([i]).encode("utf-8"))
    return out


def _vocab_kind(tokenizer: Any, pieces: list[str | None], special: set[int]) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder_name = type(getattr(backend, "decoder", None)).__name__ + repr(getattr(backend, "decoder", ""))
    if "ByteLevel" in decoder_name:
        return "byte_level"
    table = gpt2_byte_decoder()
    normal = [p for i, p in enumerate(pieces) if i not in special and p]
    if normal and sum(all(c in table for c in p) for p in normal) > 0.99 * len(normal):
        return "byte_level"
    if normal and sum("▁" in p for p in normal) > 0.05 * len(normal):
        return "sentencepiece"
    return "decode"
