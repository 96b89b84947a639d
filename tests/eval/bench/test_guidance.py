"""The guidance overhead benchmark: equal lengths for every variant, flat figures, random-HMM flags."""

from __future__ import annotations

import math

import pytest
import torch

from prunekit.decoding.decog.guided import DEFAULT_CANDIDATE_GAP
from prunekit.decoding.decog.hmm import HMM
from prunekit.eval.bench.guidance import NoEOSProcessor, bench_guidance
from tests.decoding.decog.conftest_helpers import smollm2_tokenizer
from tests.eval.test_decoding import ScriptedModel


def test_no_eos_processor_bans_until_the_count() -> None:
    proc = NoEOSProcessor([0, 2], min_tokens=2)
    prompt = [5, 6, 7]
    for i in range(4):
        out = proc(torch.tensor([prompt + [9] * i]), torch.zeros(1, 4))
        banned = bool(torch.isinf(out[0, [0, 2]]).all())
        assert banned == (i < 2)
        assert torch.isfinite(out[0, [1, 3]]).all()


def test_bench_guidance_on_a_scripted_model() -> None:
    tok = smollm2_tokenizer()
    model = ScriptedModel(tok, lambda messages: "Half of 48 is 24. 48 + 24 = 72. The answer is 72")
    given = HMM.random(16, len(tok), seed=1, concentration=0.1, eos_token_id=tok.eos_token_id)
    # H=16 is not among the sizes asked for: the HMM given is measured all the same
    out = bench_guidance(model, [given], hidden_sizes=(8,), max_tokens=12, n_prompts=2, repeats=1)
    for name in ("hard_mask", "decog_h8", "decog_h8_pruned", "decog_h16", "decog_h16_pruned"):
        assert math.isfinite(out[f"{name}.overhead"])
        assert out[f"{name}.ms_per_token"] > 0
    assert out["decog_h8.random_hmm"] == 1.0  # no HMM given for H=8
    assert out["decog_h16.random_hmm"] == 0.0  # the one given
    assert 0 < out["decog_h16_pruned.kept_mass"] <= 1.0
    assert out["decog_h16_pruned.kept_states"] <= 16
    assert out["decog_h16.kept_mass"] == 1.0
    assert all(isinstance(v, float | int) for v in out.values())
    assert out["config.candidate_gap"] == DEFAULT_CANDIDATE_GAP  # the service's setting unless told otherwise
    exact = bench_guidance(model, [given], hidden_sizes=(8,), max_tokens=12, n_prompts=1, repeats=1,
                           candidate_gap=None)  # fmt: skip
    assert exact["config.candidate_gap"] == 0.0


def test_bench_refuses_a_too_short_budget() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        bench_guidance(object(), hidden_sizes=(8,), max_tokens=2)
