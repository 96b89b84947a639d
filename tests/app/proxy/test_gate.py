"""The break-even gate learns its rates from traffic."""

from __future__ import annotations

from prunekit.app.proxy.gate import BreakEven


def test_short_contexts_are_skipped_and_a_slow_upstream_makes_pruning_pay():
    gate = BreakEven(min_tokens=200)
    assert gate.decide(100).reason == "context_too_short"
    for _ in range(30):
        gate.observe_upstream(prompt_tokens=1000, seconds=0.001)  # a very fast upstream
    assert gate.decide(10_000).reason == "costs_more_than_it_saves"
    for _ in range(30):
        gate.observe_upstream(prompt_tokens=1000, seconds=0.5, completion_tokens=0)  # 2000 tokens/s prefill
        gate.observe_pruning(context_tokens=1000, seconds=0.05, compression=0.6)
    decision = gate.decide(10_000)
    assert decision.prune and decision.expected_saving_s > decision.expected_cost_s
