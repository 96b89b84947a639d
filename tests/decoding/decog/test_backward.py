"""Backward tables against brute-force enumeration on a tiny HMM, vocabulary and DFA."""

from __future__ import annotations

import math

import pytest
import torch

from prunekit.decoding.decog.backward import BackwardTables, get_backward_tables, log_matmul_exp
from prunekit.decoding.decog.errors import VocabularyMismatchError
from prunekit.decoding.decog.hmm import HMM
from tests.decoding.decog.toy import all_sequences, finishes, seq_prob_by_start, toy_dfa

SPECS = ["regex:a+b?", "choice:ab|a 1|12", "pivot:<free>b<int>"]


@pytest.mark.parametrize("spec", SPECS)
def test_c_table_equals_brute_force(spec: str) -> None:
    dfa = toy_dfa(spec)
    v = dfa.vocab_size
    hmm = HMM.random(3, v, seed=len(spec), dtype=torch.float64)
    max_len = 4
    tables = BackwardTables(hmm, dfa, max_len)
    for k in range(1, max_len + 1):
        want = torch.zeros(dfa.num_states, hmm.hidden_size, dtype=torch.float64)
        for x in all_sequences(v, k):
            ends = [s for s in range(dfa.num_states) if finishes(dfa, s, list(x))]
            if ends:
                want[ends] += seq_prob_by_start(hmm, list(x))
        torch.testing.assert_close(tables.log_c[k].exp(), want, rtol=1e-9, atol=1e-300)
    assert tables.log_c[0].exp()[dfa.final_state].tolist() == [1.0] * 3
    assert tables.log_c[0].exp().sum().item() == 3.0


def test_windows_and_lookahead_match_sums() -> None:
    dfa = toy_dfa("regex:a+b?")
    hmm = HMM.random(4, dfa.vocab_size, seed=7, dtype=torch.float64)
    tables = BackwardTables(hmm, dfa, 6)
    states = torch.arange(dfa.num_states)
    for lo, hi in [(0, 0), (0, 3), (2, 5), (1, 6)]:
        want = tables.log_c[lo : hi + 1].exp().sum(0)
        torch.testing.assert_close(tables.log_window(states, lo, hi).exp(), want, rtol=1e-10, atol=0.0)
    keep = torch.tensor([0, 2])
    w = tables.log_window(states, 0, 4).exp()  # (S, H)
    want = (w @ hmm.transition.t())[:, keep]  # L(s, z) = sum_z' T[z, z'] W(s, z')
    assert torch.allclose(tables.log_lookahead(states, 0, 4, keep).exp(), want, atol=1e-12)


def test_cache_reuses_and_grows() -> None:
    dfa = toy_dfa("choice:ab|12")
    hmm = HMM.random(2, dfa.vocab_size, seed=1)
    t1 = get_backward_tables(hmm, dfa, 5)
    assert get_backward_tables(hmm, dfa, 3) is t1
    t2 = get_backward_tables(hmm, dfa, 9)
    assert t2 is not t1 and t2.max_len == 9
    assert torch.allclose(t2.log_c[:6], t1.log_c, equal_nan=True)


def test_cache_is_bounded_by_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from prunekit.decoding.decog import backward

    backward.clear_backward_cache()
    hmm = HMM.random(2, toy_dfa("choice:ab|12").vocab_size, seed=1)
    first = get_backward_tables(hmm, toy_dfa("choice:ab|12"), 40)
    monkeypatch.setattr(backward, "CACHE_BYTES", first.nbytes + 1)  # room for one table of this size
    second = get_backward_tables(hmm, toy_dfa("choice:a|1"), 40)
    assert list(backward._CACHE.values()) == [second]  # the least recently used one went
    assert get_backward_tables(hmm, toy_dfa("choice:a|1"), 10) is second
    backward.clear_backward_cache()


def test_vocab_mismatch() -> None:
    dfa = toy_dfa("choice:ab|12")
    with pytest.raises(VocabularyMismatchError):
        BackwardTables(HMM.random(2, dfa.vocab_size + 1), dfa, 3)


def test_log_matmul_exp_handles_minus_inf_rows() -> None:
    x = torch.tensor([[-math.inf, -math.inf], [0.0, -1000.0]])
    m = torch.tensor([[0.5, 0.5], [0.2, 0.8]])
    out = log_matmul_exp(x, m)
    assert torch.isneginf(out[0]).all()
    assert torch.allclose(out[1], torch.log(torch.tensor([0.5, 0.5])), atol=1e-6)
