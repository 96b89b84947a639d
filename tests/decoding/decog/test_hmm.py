"""HMM: forward algorithm against brute force, EM monotonicity, count-based init, files."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from prunekit.decoding.decog.errors import HMMFileError, VocabularyMismatchError
from prunekit.decoding.decog.hmm import HMM, assignment_counts


def brute_force_logprob(hmm: HMM, seq: list[int]) -> float:
    """log p(x) as an explicit sum over every hidden path."""
    total = 0.0
    pi, tr, em = hmm.initial.double(), hmm.transition.double(), hmm.emission.double()
    for path in itertools.product(range(hmm.hidden_size), repeat=len(seq)):
        p = pi[path[0]] * em[path[0], seq[0]]
        for t in range(1, len(seq)):
            p = p * tr[path[t - 1], path[t]] * em[path[t], seq[t]]
        total += float(p)
    return math.log(total)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_equals_brute_force(seed: int) -> None:
    hmm = HMM.random(3, 5, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    seqs = torch.randint(0, 5, (4, 5), generator=g)
    seqs[1, 3:] = -1  # a shorter sequence, right-padded
    seqs[2, 1:] = -1
    got = hmm.loglikelihood(seqs, batch_size=3)
    for i in range(4):
        seq = [int(x) for x in seqs[i] if x >= 0]
        assert got[i].item() == pytest.approx(brute_force_logprob(hmm, seq), abs=1e-10)


def test_long_sequence_does_not_underflow() -> None:
    hmm = HMM.random(8, 200, seed=0)
    ll = hmm.loglikelihood(torch.randint(0, 200, (2, 400)))
    assert torch.isfinite(ll).all()
    assert (ll < -400 * 3).all()  # about log(1/200) per token: far below float32's smallest probability


@pytest.mark.parametrize("seed", range(5))
def test_em_step_never_lowers_likelihood(seed: int) -> None:
    g = torch.Generator().manual_seed(100 + seed)
    data = torch.randint(0, 7, (40, 12), generator=g)
    data[::3, 8:] = -1
    hmm = HMM.random(4, 7, seed=seed, dtype=torch.float64)
    previous = -math.inf
    for _ in range(6):
        new, ll_old = hmm.em_step(data, pseudocount=0.0, batch_size=16)
        assert ll_old == pytest.approx(float(hmm.loglikelihood(data).sum()), abs=1e-8)
        assert ll_old >= previous - 1e-9
        previous = ll_old
        hmm = new
    assert float(hmm.loglikelihood(data).sum()) >= previous - 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_em_with_pseudocount_never_lowers_the_map_objective(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, 6, (30, 10), generator=g)
    hmm = HMM.random(3, 6, seed=seed, dtype=torch.float64)
    pc = 0.5
    objective = float(hmm.loglikelihood(data).sum()) + hmm.log_prior(pc)
    for _ in range(5):
        hmm, _ = hmm.em_step(data, pseudocount=pc)
        new_objective = float(hmm.loglikelihood(data).sum()) + hmm.log_prior(pc)
        assert new_objective >= objective - 1e-9
        objective = new_objective


def test_em_learns_a_deterministic_source() -> None:
    # Data from a 2-state cycle emitting 0 then 1: EM from a random start should approach log p = 0.
    data = torch.tensor([[0, 1, 0, 1, 0, 1]] * 20)
    hmm = HMM.random(2, 3, seed=0, dtype=torch.float64)
    start = float(hmm.loglikelihood(data).sum())
    for _ in range(30):
        hmm, _ = hmm.em_step(data, pseudocount=0.0)
    end = float(hmm.loglikelihood(data).sum())
    assert end > start
    assert end / data.numel() > -0.05


def test_from_counts_matches_hand_counts() -> None:
    clusters = torch.tensor([[0, 1, 1], [1, 0, 0]])
    tokens = torch.tensor([[5, 6, -1], [7, 5, 5]])
    hmm = HMM.from_counts(clusters, tokens, hidden_size=2, vocab_size=8, pseudocount=0.0, dtype=torch.float64)
    assert hmm.initial.tolist() == pytest.approx([0.5, 0.5])
    # transitions: 0->1 (seq 0, the pad ends it), 1->0 and 0->0 (seq 1)
    assert hmm.transition.flatten().tolist() == pytest.approx([0.5, 0.5, 1.0, 0.0])
    assert hmm.emission[0].tolist() == pytest.approx([0, 0, 0, 0, 0, 1.0, 0, 0])  # state 0 emitted 5, 5, 5
    assert hmm.emission[1, 6].item() == pytest.approx(0.5)
    assert hmm.emission[1, 7].item() == pytest.approx(0.5)


def test_m_step_adds_a_pseudocount_per_entry_of_each_table() -> None:
    g = torch.Generator().manual_seed(0)
    clusters = torch.randint(3, (20, 6), generator=g)
    tokens = torch.randint(7, (20, 6), generator=g)
    tokens[::3, 4:] = -1  # some shorter sequences
    counts = assignment_counts(clusters, tokens, 3, 7)
    assert int(counts["emission"].sum()) == int((tokens >= 0).sum())
    hmm = HMM.m_step(counts, (0.5, 0.25, 0.1), dtype=torch.float64)
    for table, name, pc in ((hmm.transition, "transition", 0.25), (hmm.emission, "emission", 0.1)):
        want = counts[name] + pc
        torch.testing.assert_close(table, want / want.sum(1, keepdim=True))
    torch.testing.assert_close(hmm.initial, (counts["initial"] + 0.5) / (counts["initial"] + 0.5).sum())


def test_from_counts_pseudocount_gives_full_support() -> None:
    clusters = torch.randint(0, 4, (10, 6))
    tokens = torch.randint(0, 20, (10, 6))
    hmm = HMM.from_counts(clusters, tokens, hidden_size=5, vocab_size=20, pseudocount=1e-3)
    assert (hmm.emission > 0).all() and (hmm.transition > 0).all() and (hmm.initial > 0).all()
    assert hmm.transition.sum(1).tolist() == pytest.approx([1.0] * 5, abs=1e-6)
    with pytest.raises(VocabularyMismatchError):
        HMM.from_counts(clusters, tokens + 20, hidden_size=5, vocab_size=20)
    with pytest.raises(ValueError, match="cluster ids"):
        HMM.from_counts(clusters + 5, tokens, hidden_size=5, vocab_size=20)


def test_save_load_roundtrip_fp16(tmp_path) -> None:
    hmm = HMM.random(16, 300, seed=1, eos_token_id=2)
    hmm.save(tmp_path / "h", metadata={"note": "test"})
    assert (tmp_path / "h" / "hmm.safetensors").stat().st_size < 16 * 300 * 2 + 4096  # fp16 on disk
    back = HMM.load(tmp_path / "h")
    assert back.config == hmm.config
    # fp16 logs: probabilities within about 1% (relative)
    assert torch.allclose(back.emission, hmm.emission, rtol=2e-2, atol=1e-7)
    assert torch.allclose(back.emission.sum(1), torch.ones(16), atol=1e-5)
    data = torch.randint(0, 300, (3, 10))
    assert torch.allclose(back.loglikelihood(data), hmm.loglikelihood(data), atol=0.2)


def test_load_rejects_bad_folder(tmp_path) -> None:
    with pytest.raises(HMMFileError, match="must contain"):
        HMM.load(tmp_path)


def test_bad_padding_rejected() -> None:
    hmm = HMM.random(2, 4)
    with pytest.raises(ValueError, match="right padding"):
        hmm.loglikelihood(torch.tensor([[1, -1, 2]]))
