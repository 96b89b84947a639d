"""Token bytes: the GPT-2 byte table, toy vocabularies, and SmolLM2's byte-level BPE."""

from __future__ import annotations

import pytest

from prunekit.decoding.decog.errors import VocabularyMismatchError
from prunekit.decoding.decog.vocab import TokenVocabulary, gpt2_byte_decoder
from tests.decoding.decog.conftest_helpers import smollm2_tokenizer


def test_gpt2_byte_table_is_a_bijection() -> None:
    table = gpt2_byte_decoder()
    assert len(table) == 256 and sorted(table.values()) == list(range(256))
    assert table["Ġ"] == ord(" ") and table["Ċ"] == ord("\n") and table["a"] == ord("a")


def test_from_strings_and_eos() -> None:
    vocab = TokenVocabulary.from_strings([None, "a", "é"], eos_token_ids=[0])
    assert vocab.token_bytes == (None, b"a", "é".encode())
    assert vocab.eos_token_ids == (0,)
    other = TokenVocabulary.from_strings([None, "a", "e"], eos_token_ids=[0])
    assert vocab.fingerprint != other.fingerprint
    with pytest.raises(VocabularyMismatchError):
        TokenVocabulary.from_strings(["a"], eos_token_ids=[])
    with pytest.raises(VocabularyMismatchError):
        TokenVocabulary.from_strings(["a"], eos_token_ids=[3])


def test_smollm2_token_bytes_reassemble_text() -> None:
    tok = smollm2_tokenizer()
    vocab = TokenVocabulary.from_tokenizer(tok)
    assert vocab.size == len(tok) == 49152
    assert vocab.eos_token_ids == (2,)
    assert vocab.token_bytes[2] is None and vocab.token_bytes[1] is None  # <|im_end|>, <|im_start|>
    assert TokenVocabulary.from_tokenizer(tok) is vocab  # cached per tokenizer
    for text in ["The answer is 42.", '{"answer": "Paris"}', "café naïve 中文 😀", "  two  spaces\n\tand tab"]:
        ids = tok.encode(text, add_special_tokens=False)
        assert b"".join(vocab.token_bytes[i] for i in ids) == text.encode("utf-8")
    # Some tokens hold only part of a UTF-8 character: kept as exact bytes, not as a replacement character.
    partial = [b for b in vocab.token_bytes if b is not None and _is_partial_utf8(b)]
    assert len(partial) > 50


def _is_partial_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
