"""A toy tokenizer vocabulary and brute-force references shared by the Deco-G tests."""

from __future__ import annotations

import itertools

import torch

from prunekit.decoding.decog.hmm import HMM
from prunekit.decoding.decog.token_dfa import TokenDFA, compile_token_dfa
from prunekit.decoding.decog.vocab import TokenVocabulary

# Id 0 is EOS; the rest overlap on purpose (multi-char tokens, a leading-space variant, a straddling token).
TOY_TOKENS: list[str | None] = [None, "a", "b", "ab", " ", "1", "2", "12", "x", " a"]
TOY_EOS = 0


def toy_vocab() -> TokenVocabulary:
    return TokenVocabulary.from_strings(TOY_TOKENS, [TOY_EOS])


def toy_dfa(spec: str) -> TokenDFA:
    return compile_token_dfa(spec, toy_vocab())


def seq_prob(hmm: HMM, start: torch.Tensor, seq: list[int]) -> float:
    """P(x_1..x_n) under the HMM with the first hidden state distributed as `start` (H,)."""
    a = start.double()
    em, tr = hmm.emission.double(), hmm.transition.double()
    for i, x in enumerate(seq):
        if i:
            a = a @ tr
        a = a * em[:, x]
    return float(a.sum())


def seq_prob_by_start(hmm: HMM, seq: list[int]) -> torch.Tensor:
    """(H,): P(x_1..x_n | z_1 = z) for every z, by the plain product over time (no scaling, float64)."""
    em, tr = hmm.emission.double(), hmm.transition.double()
    b = torch.ones(hmm.hidden_size, dtype=torch.float64)
    for i in range(len(seq) - 1, -1, -1):  # backward: b(z) = e_z(x_i) sum_z' T[z, z'] b(z')
        b = em[:, seq[i]] * (tr @ b if i < len(seq) - 1 else b)
    return b


def finishes(dfa: TokenDFA, state: int, seq: list[int]) -> bool:
    return dfa.walk(seq, state) == dfa.final_state


def all_sequences(vocab_size: int, length: int):
    return itertools.product(range(vocab_size), repeat=length)
