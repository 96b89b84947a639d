"""Token-level DFA: toy vocabularies with straddling tokens, and SmolLM2's real vocabulary."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from prunekit.decoding.decog.errors import FormatTooLargeError, UnsatisfiableFormatError
from prunekit.decoding.decog.formats import parse_format
from prunekit.decoding.decog.guidance import DecoGProcessor, HardMaskProcessor
from prunekit.decoding.decog.hmm import HMM
from prunekit.decoding.decog.token_dfa import compile_token_dfa
from prunekit.decoding.decog.vocab import TokenVocabulary
from tests.decoding.decog.conftest_helpers import smollm2_tokenizer


def test_straddling_and_multi_token_pivots_on_a_toy_vocabulary() -> None:
    tokens = [None, "The", " ans", "wer", " is", " is 4", "4", "2", " ", "T", "he answer is", "x", "é"[:1]]
    vocab = TokenVocabulary.from_strings(tokens, [0])
    dfa = compile_token_dfa("pivot:<free>The answer is <int>", vocab)
    ids = {t: i for i, t in enumerate(tokens) if t is not None}
    ok = [
        ["x", "The", " ans", "wer", " is", " ", "4", "2"],
        ["The", " ans", "wer", " is 4", "2"],  # " is 4" crosses from the pivot into the number
        ["T", "he answer is", " ", "4"],  # the pivot split differently
    ]
    for seq in ok:
        assert dfa.accepts([ids[t] for t in seq]), seq
        assert dfa.accepts([ids[t] for t in seq] + [0])
    bad = [["The", " ans", "wer", " is"], ["The", " ans", "wer", " is", " ", "x"]]
    for seq in bad:
        assert not dfa.accepts([ids[t] for t in seq]), seq
    # EOS only where the text so far is complete
    s = dfa.walk([ids["The"], ids[" ans"]])
    assert dfa.step(s, 0) == -1
    assert dfa.step(dfa.walk([ids["The"], ids[" ans"], ids["wer"], ids[" is 4"]]), 0) == dfa.final_state


def test_partial_utf8_tokens() -> None:
    tokens: list[bytes | None] = [None, b"caf", b"\xc3", b"\xa9", "é".encode(), b"e", b"\xa9x"]
    vocab = TokenVocabulary.from_bytes(tokens, [0])
    dfa = compile_token_dfa("choice:café", vocab)
    assert dfa.accepts([1, 4]) and dfa.accepts([1, 2, 3])  # "é" whole, or as two byte tokens
    assert not dfa.accepts([1, 2]) and not dfa.accepts([1, 5])
    assert dfa.walk([1, 2, 6]) == -1


def test_groups_and_edges_agree_with_the_table() -> None:
    vocab = TokenVocabulary.from_strings([None, "a", "b", "ab", "1"], [0])
    dfa = compile_token_dfa("regex:(ab)+1?", vocab)
    for s in range(dfa.num_states):
        rebuilt = np.full(dfa.vocab_size, -1)
        for nxt, ids in dfa.groups(s):
            rebuilt[ids] = nxt
        assert (rebuilt == dfa.next_state[s]).all()
    for u, v, mask in dfa.edges():
        assert (dfa.next_state[u][mask] == v).all()
    assert dfa.next_state[dfa.final_state].max() == -1


def test_reachable_lengths_and_min_tokens() -> None:
    vocab = TokenVocabulary.from_strings([None, "a", "aa"], [0])
    dfa = compile_token_dfa("regex:a{3}", vocab)
    reach = dfa.reachable_lengths(5)
    start = dfa.initial_state
    assert reach[:, start].tolist() == [False, False, False, True, True, False]  # "aa a"/"a aa" + EOS, "a a a" + EOS
    assert dfa.min_tokens_to_finish()[start] == 3


def test_unwritable_format_and_too_many_states() -> None:
    vocab = TokenVocabulary.from_strings([None, "a", "b"], [0])
    with pytest.raises(UnsatisfiableFormatError, match="vocabulary"):
        compile_token_dfa("choice:c", vocab)
    with pytest.raises(FormatTooLargeError, match="states"):
        compile_token_dfa("regex:[ab]{0,40}", vocab, max_states=16)


# --------------------------------------------------------------------------- SmolLM2
@pytest.fixture(scope="module")
def smol():
    tok = smollm2_tokenizer()
    return tok, TokenVocabulary.from_tokenizer(tok)


def _ids(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def test_smollm2_pivot_format(smol) -> None:
    tok, vocab = smol
    t0 = time.perf_counter()
    dfa = compile_token_dfa("pivot:<free>The answer is <int>", vocab)
    took = time.perf_counter() - t0
    assert took < 20.0  # about 0.5 s on a 2-core machine; generous for a loaded CI box
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    assert dfa.eos_token_ids == (eos,)
    for text in ["6 * 7 = 42. The answer is 42", "The answer is -3", "Café au lait… The answer is 1000"]:
        ids = _ids(tok, text)
        assert dfa.accepts(ids) and dfa.accepts([*ids, eos]), text
    for text in ["The answer is 42.", "The answer is forty", "no pivot here", "The answer is 4 The answer is 5"]:
        assert not dfa.accepts(_ids(tok, text)), text
    # another tokenization of the same text (character by character) is accepted too
    text = "so The answer is 7"
    by_char = [tok.convert_tokens_to_ids(tok.convert_ids_to_tokens(_ids(tok, c))[0]) for c in text]
    assert dfa.accepts(by_char)
    # whitespace variants: " The" and "The" both start the pivot
    s = dfa.walk(_ids(tok, "ok."))
    the, space_the = _ids(tok, "The")[0], _ids(tok, " The")[0]
    assert the != space_the and dfa.step(s, the) >= 0 and dfa.step(s, space_the) >= 0


def test_smollm2_json_format(smol) -> None:
    tok, vocab = smol
    dfa = compile_token_dfa('json:{"answer": "string", "verdict": ["correct", "incorrect"]}', vocab)
    good = ['{"answer": "Paris", "verdict": "correct"}', '{ "answer" : "é \\"q\\"", "verdict":"incorrect" }']
    for text in good:
        assert dfa.accepts(_ids(tok, text)), text
    bad = ['{"answer": Paris, "verdict": "correct"}', '{"answer": "x", "verdict": "wrong"}', '{"answer": "x"}']
    for text in bad:
        assert not dfa.accepts(_ids(tok, text)), text
    assert not dfa.accepts(_ids(tok, good[0])[:-1])


def test_smollm2_enum_options_are_the_llms_choice(smol) -> None:
    """ "incorrect" is two tokens (`inc` + `orrect`), "correct" one: with a flat LLM both verdicts still start
    equally likely, however the HMM rates the characters each still needs (a small HMM rated them e^11 apart)."""
    tok, vocab = smol
    dfa = compile_token_dfa('json:{"verdict": ["correct", "incorrect"]}', vocab)
    prefix = _ids(tok, '{"verdict": "')
    assert dfa.choice_states[dfa.walk(prefix)]
    correct, inc = _ids(tok, "correct"), _ids(tok, "incorrect")
    assert len(correct) == 1 and len(inc) == 2
    proc = DecoGProcessor(HMM.random(16, vocab.size, seed=0, concentration=0.05), dfa, 24)
    flat = torch.zeros(1, vocab.size)
    ids = [1, 2]
    for token in [*prefix, None]:
        out = proc(torch.tensor([ids]), flat.clone())[0]
        if token is not None:
            ids.append(token)
    assert out[correct[0]].item() == pytest.approx(out[inc[0]].item())


@pytest.mark.parametrize("spec", ["pivot:<free>The answer is <int>", 'json:{"answer": "string"}'])
def test_smollm2_guided_loop_is_compliant(smol, spec: str) -> None:
    """A random HMM and random logits over the real vocabulary still yield a well-formed output."""
    tok, vocab = smol
    dfa = compile_token_dfa(spec, vocab)
    hmm = HMM.random(16, vocab.size, seed=0, concentration=0.05)
    g = torch.Generator().manual_seed(0)
    for proc in (DecoGProcessor(hmm, dfa, 24, prune_mass=0.9), HardMaskProcessor(dfa, 24)):
        ids = [1, 2]  # a stand-in prompt
        prompt_len = len(ids)
        while ids[-1] != 2 or len(ids) == prompt_len:
            out = proc(torch.tensor([ids]), 4 * torch.randn(1, vocab.size, generator=g))
            ids.append(int(torch.multinomial(torch.softmax(out[0], 0), 1, generator=g)))
        text = tok.decode(ids[prompt_len:-1])
        assert parse_format(spec).matches(text), text
        assert len(ids) - prompt_len <= 24
