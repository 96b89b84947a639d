"""The guidance benchmark runs end to end on a toy vocabulary and reports every configuration."""

from __future__ import annotations

from prunekit.eval.bench.decog_step import run_benchmark
from tests.decoding.decog.toy import TOY_EOS, toy_vocab


def test_run_benchmark_rows() -> None:
    vocab = toy_vocab()
    forced = [8, 1, 2, 5, TOY_EOS]  # "x", "a", "b", "1": free text, the pivot "b", an integer
    rows = run_benchmark(vocab, forced, spec="pivot:<free>b<int>", hidden_sizes=(4, 8), max_new_tokens=12)
    assert [r["method"] for r in rows] == ["hard_mask", "outlines"] + ["decog"] * 6
    assert {(r["hidden_size"], r["prune_mass"], r["candidate_gap"]) for r in rows[2:]} == {
        (h, p, g) for h in (4, 8) for p, g in ((None, None), (0.9, None), (0.9, 15.0))
    }
    for r in rows:
        assert r["steps"] == len(forced) and r["ms_mean"] > 0 and r["cpu_ms_mean"] >= 0
    assert all(0 < r["kept_states"] <= r["hidden_size"] for r in rows[2:])
