"""Guidance processors: exact agreement with brute force, guaranteed compliance (property test), contracts."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunekit.decoding.decog import guidance
from prunekit.decoding.decog.errors import FormatBudgetError, GuidanceError, VocabularyMismatchError
from prunekit.decoding.decog.formats import parse_format
from prunekit.decoding.decog.guidance import DecoGProcessor, HardMaskProcessor
from prunekit.decoding.decog.hmm import HMM
from prunekit.decoding.errors import InvalidRequestError
from tests.decoding.decog.toy import TOY_EOS, TOY_TOKENS, all_sequences, finishes, seq_prob, toy_dfa

V = len(TOY_TOKENS)


def brute_force_guided(hmm, dfa, prefix, llm, max_new, min_new) -> torch.Tensor:
    """log_softmax(llm + log P_HMM(done in budget | prefix, v)) by enumerating every continuation; at a choice
    point, the LLM's scores on the tokens that can still finish (no HMM term)."""
    g = len(prefix)
    lo, hi = max(0, min_new - g), max_new - g - 1
    state = dfa.walk(prefix)
    out = torch.full((V,), -math.inf, dtype=torch.float64)
    for v in range(V):
        if dfa.step(state, v) < 0:
            continue
        p_xv = seq_prob(hmm, hmm.initial, [*prefix, v])
        done = 0.0
        for k in range(lo, hi + 1):
            for cont in all_sequences(V, k):
                if finishes(dfa, state, [v, *cont]):
                    done += seq_prob(hmm, hmm.initial, [*prefix, v, *cont])
        if done > 0:
            out[v] = llm[v] if dfa.choice_states[state] else llm[v] + math.log(done / p_xv)
    return torch.log_softmax(out, dim=0)


@pytest.mark.parametrize("bulk_min", [10_000, 1])  # 1: the largest group goes through the dense product
@pytest.mark.parametrize(
    ("spec", "max_new", "min_new"),
    [("regex:a+b?", 4, 0), ("regex:a+b?", 4, 2), ("pivot:<free>b<int>", 4, 0), ("choice:ab|b|12", 3, 0)],
)
def test_decog_equals_brute_force(spec: str, max_new: int, min_new: int, bulk_min: int, monkeypatch) -> None:
    monkeypatch.setattr(guidance, "BULK_MIN_TOKENS", bulk_min)
    dfa = toy_dfa(spec)
    hmm = HMM.random(3, V, seed=5, dtype=torch.float64)
    proc = DecoGProcessor(hmm, dfa, max_new, min_new)
    g = torch.Generator().manual_seed(0)
    prompt = [4, 4]  # the prompt is not part of the output
    ids: list[int] = []
    for _ in range(max_new):
        llm = torch.randn(V, generator=g, dtype=torch.float64)
        got = proc(torch.tensor([prompt + ids]), llm[None].clone())[0]
        want = brute_force_guided(hmm, dfa, ids, llm, max_new, min_new)
        assert torch.equal(torch.isinf(got), torch.isinf(want)), (ids, got, want)
        finite = torch.isfinite(want)
        torch.testing.assert_close(got[finite], want[finite], rtol=1e-9, atol=1e-9)
        token = int(torch.multinomial(got.exp(), 1, generator=g))
        ids.append(token)
        if token == TOY_EOS:
            break
    assert ids[-1] == TOY_EOS and dfa.accepts(ids)


def test_prune_mass_one_equals_unpruned_and_pruning_reports() -> None:
    dfa = toy_dfa("pivot:<free>b<int>")
    hmm = HMM.random(8, V, seed=2, concentration=0.2)
    full = DecoGProcessor(hmm, dfa, 12)
    same = DecoGProcessor(hmm, dfa, 12, prune_mass=1.0)
    pruned = DecoGProcessor(hmm, dfa, 12, prune_mass=0.5)
    g = torch.Generator().manual_seed(1)
    ids = [4]
    for _ in range(3):
        llm = torch.randn(1, V, generator=g)
        a, b, c = (
            full(torch.tensor([ids]), llm.clone()),
            same(torch.tensor([ids]), llm.clone()),
            pruned(torch.tensor([ids]), llm.clone()),
        )
        torch.testing.assert_close(a, b)
        assert torch.equal(torch.isinf(a), torch.isinf(c))  # pruning changes weights, never feasibility
        ids.append(int(a.argmax()))
    st_ = pruned.stats()
    assert st_["steps"] == 3 and st_["kept_states"] < 8 and 0.5 <= st_["kept_mass"] <= 1.0


@pytest.mark.parametrize("bulk_min", [10_000, 1])
def test_pruned_scores_follow_the_formula_on_kept_states(bulk_min: int, monkeypatch) -> None:
    """With pruning, every token's term is the lookahead formula summed over the kept hidden states only."""
    monkeypatch.setattr(guidance, "BULK_MIN_TOKENS", bulk_min)
    dfa = toy_dfa("pivot:<free>b<int>")
    hmm = HMM.random(6, V, seed=4, dtype=torch.float64, concentration=0.3)
    proc = DecoGProcessor(hmm, dfa, 7, prune_mass=0.7)
    g = torch.Generator().manual_seed(2)
    ids = [4]
    for _ in range(4):
        llm = torch.randn(V, generator=g, dtype=torch.float64)
        got = proc(torch.tensor([ids]), llm[None].clone())[0]
        alpha = proc.alpha.clone()  # the forward vector this step used (the call first observed the last token)
        order = torch.argsort(alpha, descending=True)
        k = int(torch.searchsorted(torch.cumsum(alpha[order], 0), 0.7 * alpha.sum())) + 1
        keep = order[:k]
        lo, hi = proc.tracker.window()
        state = proc.state
        choice = bool(dfa.choice_states[state])  # the LLM alone there: no hidden states kept or used
        assert choice or proc.last_kept == k
        want = torch.full((V,), -math.inf, dtype=torch.float64)
        for v in range(V):
            nxt = dfa.step(state, v)
            if nxt < 0 or not proc.tracker.feasible(np.array([nxt]))[0]:
                continue
            if choice:
                want[v] = llm[v]
                continue
            look = proc.tables.log_lookahead(torch.tensor([nxt]), lo, hi, keep)[0].exp()  # (K,)
            weights = alpha[keep] * hmm.emission[keep, v]
            want[v] = llm[v] + math.log(float((weights * look).sum() / weights.sum()))
        want = torch.log_softmax(want, 0)
        assert torch.equal(torch.isinf(got), torch.isinf(want))
        finite = torch.isfinite(want)
        torch.testing.assert_close(got[finite], want[finite], rtol=1e-9, atol=1e-9)
        ids.append(int(got.argmax()))
        if ids[-1] == TOY_EOS:
            break


def test_candidate_gap_is_exact_on_candidates_and_keeps_feasibility(monkeypatch) -> None:
    monkeypatch.setattr(guidance, "BULK_MIN_TOKENS", 1)
    dfa = toy_dfa("pivot:<free>b<int>")
    hmm = HMM.random(5, V, seed=3, dtype=torch.float64)
    llm = torch.tensor([[0.0, 5.0, -30.0, 4.0, -30.0, -30.0, -30.0, -30.0, 4.5, -30.0]], dtype=torch.float64)
    exact = DecoGProcessor(hmm, dfa, 6)(torch.tensor([[4]]), llm.clone())[0]
    fast_proc = DecoGProcessor(hmm, dfa, 6, candidate_gap=2.0)
    fast = fast_proc(torch.tensor([[4]]), llm.clone())[0]
    assert torch.equal(torch.isinf(exact), torch.isinf(fast))
    group0 = dfa.groups(dfa.initial_state)[0][1].tolist()
    cands = [t for t in group0 if llm[0, t] >= 5.0 - 2.0]  # the bulk tokens the LLM gives a chance
    assert len(cands) >= 2
    for a, b in itertools.pairwise(cands):  # exact relative weights among candidates
        assert (fast[a] - fast[b]).item() == pytest.approx((exact[a] - exact[b]).item(), abs=1e-9)
    others = sum(len(ids) for _, ids in dfa.groups(dfa.initial_state)[1:])  # smaller groups: always exact
    assert fast_proc.stats()["exact_tokens"] == len(cands) + others


def test_choice_points_leave_the_choice_to_the_llm() -> None:
    """Among fixed options the HMM term is left out: a flat LLM gets a flat choice, whatever the HMM prefers."""
    dfa = toy_dfa("choice:ab|b|12")
    assert dfa.choice_states[dfa.initial_state]
    hmm = HMM.random(4, V, seed=1, concentration=0.1)  # peaked: it would favour some options strongly
    proc = DecoGProcessor(hmm, dfa, 3)
    llm = torch.zeros(1, V, dtype=torch.float64)
    out = proc(torch.tensor([[4]]), llm.clone())[0]
    allowed = [t for t in range(V) if dfa.step(dfa.initial_state, t) >= 0]
    assert sorted(allowed) == [1, 2, 3, 5, 7]  # a, b, ab, 1, 12
    torch.testing.assert_close(out[allowed], torch.full((5,), -math.log(5), dtype=torch.float64))
    # after "1" the text ahead is fixed ("2"): an ordinary step again, counted apart from the choice
    out = proc(torch.tensor([[4, 5]]), llm.clone())[0]
    assert out[6].item() == 0.0
    assert proc.stats()["choice_steps"] == 1 and proc.stats()["steps"] == 2


def test_weight_zero_is_the_hard_mask_renormalised() -> None:
    dfa = toy_dfa("regex:a+b?")
    hmm = HMM.random(3, V, seed=0)
    llm = torch.randn(1, V)
    guided = DecoGProcessor(hmm, dfa, 5, weight=0.0)(torch.tensor([[1]]), llm.clone())
    hard = HardMaskProcessor(dfa, 5)(torch.tensor([[1]]), llm.clone())
    torch.testing.assert_close(guided, torch.log_softmax(hard, dim=1))


def test_forces_eos_when_budget_runs_out() -> None:
    dfa = toy_dfa("regex:a+")
    proc = HardMaskProcessor(dfa, 3)
    llm = torch.zeros(1, V)
    llm[0, TOY_EOS] = -100.0  # the model never wants to stop
    ids = [9]
    for _ in range(3):
        out = proc(torch.tensor([ids]), llm.clone())
        ids.append(int(out.argmax()))
    assert ids[1:] == [1, 1, TOY_EOS]


def test_min_new_tokens_delays_eos() -> None:
    dfa = toy_dfa("regex:a+")
    proc = DecoGProcessor(HMM.random(2, V, seed=0), dfa, 6, min_new_tokens=3)
    llm = torch.zeros(1, V)
    llm[0, TOY_EOS] = 100.0  # the model wants to stop at once
    ids = [9]
    while ids[-1] != TOY_EOS:
        ids.append(int(proc(torch.tensor([ids]), llm.clone()).argmax()))
    assert ids[1:] == [1, 1, 1, TOY_EOS]


def test_after_eos_only_eos() -> None:
    dfa = toy_dfa("choice:ab")
    proc = HardMaskProcessor(dfa, 4)
    proc(torch.tensor([[9]]), torch.zeros(1, V))  # the first call fixes the prompt length
    out = proc(torch.tensor([[9, 3, TOY_EOS]]), torch.zeros(1, V))  # two tokens at once: "ab", then EOS
    assert out[0, TOY_EOS] == 0 and torch.isinf(out[0, 1:]).all()
    out = proc(torch.tensor([[9, 3, TOY_EOS, TOY_EOS, 5]]), torch.zeros(1, V))  # batch padding: ignored
    assert out[0, TOY_EOS] == 0 and proc.state == proc.tracker.dfa.final_state


def test_contract_errors() -> None:
    dfa = toy_dfa("choice:ab|12")
    hmm = HMM.random(2, V)
    proc = DecoGProcessor(hmm, dfa, 5)
    with pytest.raises(GuidanceError, match="one sequence"):
        proc(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, V))
    proc(torch.tensor([[4, 4]]), torch.zeros(1, V))
    with pytest.raises(GuidanceError, match="not allowed by the format"):
        proc(torch.tensor([[4, 4, 8]]), torch.zeros(1, V))  # "x" is no option's start
    proc.reset()
    proc(torch.tensor([[4, 4]]), torch.zeros(1, V))
    with pytest.raises(GuidanceError, match="another sequence"):
        proc(torch.tensor([[4]]), torch.zeros(1, V))
    proc.reset()
    proc(torch.tensor([[4, 4]]), torch.zeros(1, V))
    with pytest.raises(GuidanceError, match="another sequence"):
        proc(torch.tensor([[7, 7, 7]]), torch.zeros(1, V))  # a new request with a longer prompt
    proc.reset()
    proc(torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, V))  # an empty prompt is fine
    proc(torch.tensor([[1]]), torch.zeros(1, V))
    assert proc.state != dfa.initial_state
    with pytest.raises(VocabularyMismatchError):
        DecoGProcessor(HMM.random(2, V + 3), dfa, 5)
    with pytest.raises(VocabularyMismatchError):
        HardMaskProcessor(dfa, 5)(torch.tensor([[1]]), torch.zeros(1, V - 1))


def test_budget_too_small_is_a_request_error() -> None:
    dfa = toy_dfa("choice:ab ab ab")  # "ab", " a", "b", " a", "b", EOS: 6 tokens at least
    with pytest.raises(FormatBudgetError, match="at least 6 tokens") as info:
        HardMaskProcessor(dfa, 3)
    assert isinstance(info.value, InvalidRequestError)
    with pytest.raises(FormatBudgetError):
        HardMaskProcessor(toy_dfa("choice:ab"), 5, min_new_tokens=4)  # fixed length, cannot be padded


def test_wider_scores_get_minus_inf_beyond_the_vocabulary() -> None:
    dfa = toy_dfa("regex:[ab]+")
    out = DecoGProcessor(HMM.random(2, V), dfa, 4)(torch.tensor([[1]]), torch.zeros(1, V + 5))
    assert out.shape == (1, V + 5) and torch.isinf(out[0, V:]).all()


# ------------------------------------------------------------------ property: always compliant
_CHARS = "ab12x "
_text = st.text(alphabet=_CHARS, min_size=1, max_size=4)
_regexes = st.sampled_from(["[ab]+", "1(2|x)*", "a{1,3}b?", "(ab|12)+ ?", "x?[12]{2}", "[ab ]*1"])
_specs = st.one_of(
    st.lists(_text, min_size=1, max_size=3).map(lambda opts: "choice:" + "|".join(o.replace("|", "") for o in opts)),
    _regexes.map(lambda r: "regex:" + r),
    st.tuples(st.text(alphabet="ab x", min_size=1, max_size=3), st.sampled_from(["<int>", "<choice:a|b2>", ""])).map(
        lambda t: "pivot:<free>" + t[0] + t[1]
    ),
    st.tuples(_text, _text).map(lambda t: f"pivot:{t[0]}<free:3>{t[1]}"),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=_specs,
    seed=st.integers(0, 2**16),
    slack=st.integers(0, 6),
    mode=st.sampled_from(["decog", "decog_pruned", "decog_gap", "hard_mask"]),
    sample=st.booleans(),
    dense=st.booleans(),
)
def test_output_always_satisfies_the_format(
    spec: str, seed: int, slack: int, mode: str, sample: bool, dense: bool
) -> None:
    saved = guidance.BULK_MIN_TOKENS
    guidance.BULK_MIN_TOKENS = 1 if dense else saved  # the dense full-vocabulary path, as in free text on a real LLM
    try:
        _run_compliance_case(spec, seed, slack, mode, sample)
    finally:
        guidance.BULK_MIN_TOKENS = saved


def _run_compliance_case(spec: str, seed: int, slack: int, mode: str, sample: bool) -> None:
    fmt = parse_format(spec)
    dfa = toy_dfa(spec)
    budget = int(dfa.min_tokens_to_finish()[dfa.initial_state]) + slack
    hmm = HMM.random(4, V, seed=seed, concentration=0.3)
    if mode == "hard_mask":
        proc = HardMaskProcessor(dfa, budget)
    else:
        proc = DecoGProcessor(
            hmm,
            dfa,
            budget,
            prune_mass=None if mode == "decog" else 0.6,
            candidate_gap=1.0 if mode == "decog_gap" else None,
        )
    g = torch.Generator().manual_seed(seed)
    prompt = [4, 8]
    ids: list[int] = []
    while not ids or ids[-1] != TOY_EOS:
        assert len(ids) < budget, "no EOS within the budget"
        llm = 3.0 * torch.randn(1, V, generator=g)  # a fake model with strong, arbitrary preferences
        out = proc(torch.tensor([prompt + ids]), llm)[0]
        probs = torch.softmax(out.double(), dim=0)
        token = int(torch.multinomial(probs, 1, generator=g)) if sample else int(out.argmax())
        ids.append(token)
    text = "".join(TOY_TOKENS[t] for t in ids[:-1])
    assert fmt.matches(text), (spec, text)
    assert len(ids) <= budget


def test_when_the_llm_bans_every_allowed_token_the_format_alone_decides() -> None:
    """Another processor may have set every token the format allows to -inf: guidance then follows the format."""
    dfa = toy_dfa("choice:ab|12")
    hmm = HMM.random(4, V, seed=0)
    allowed = [t for t in range(V) if dfa.step(dfa.initial_state, t) >= 0]
    llm = torch.zeros(1, V)
    llm[0, allowed] = -math.inf
    out = DecoGProcessor(hmm, dfa, 4)(torch.tensor([[4]]), llm)[0]
    assert not torch.isnan(out).any()
    assert torch.isfinite(out[allowed]).all()
    assert torch.isinf(out[[t for t in range(V) if t not in allowed]]).all()
    assert torch.logsumexp(out, 0).item() == pytest.approx(0.0, abs=1e-6)
