"""The break-even gate: prune only when the upstream time saved is worth more than the pruning time spent.

Pruning `n` context tokens costs about `n * prune_s` seconds here; the upstream then reads `n * compression`
fewer prompt tokens, which saves `n * compression * prefill_s` seconds of its prompt processing. Both rates and
the compression are learnt from this proxy's own traffic as exponential moving averages: `prune_s` and
`compression` from every pruning, `prefill_s` from every upstream answer (the time to its first streamed token
over its prompt tokens, or for a whole answer its time with each generated token weighed as `DECODE_WEIGHT`
prompt tokens). Until it has seen traffic, priors from the project's CPU measurements hold (DESIGN.md: the shipped
pruner at about 38 passages of 256 tokens a second, SmolLM2 on llama.cpp prefilling 500 tokens in about a second).
A context shorter than `min_tokens` is never pruned: its few tokens cannot repay even a fast pruning.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["DECODE_WEIGHT", "BreakEven", "Decision"]

DECODE_WEIGHT = 10.0  # one generated token costs about as much upstream time as this many prompt tokens
_PRIOR_PRUNE_S = 1.0e-4  # seconds per context token (38 passages of 256 tokens a second)
_PRIOR_PREFILL_S = 1.0e-3  # seconds per prompt token, a small model on a CPU (1000 tokens a second)
_PRIOR_COMPRESSION = 0.5
_ALPHA = 0.2  # weight of the newest observation


@dataclass(frozen=True)
class Decision:
    prune: bool
    reason: str  # why: "pays_off", "context_too_short", "costs_more_than_it_saves"
    expected_saving_s: float
    expected_cost_s: float


class BreakEven:
    """Thread-safe running estimates and the decision they give.

    >>> gate = BreakEven(min_tokens=100)
    >>> gate.decide(50).reason, gate.decide(5000).prune
    ('context_too_short', True)
    >>> for _ in range(30):
    ...     gate.observe_upstream(prompt_tokens=1000, seconds=0.01)  # a fast GPU upstream: pruning cannot pay
    >>> gate.decide(5000).reason
    'costs_more_than_it_saves'
    """

    def __init__(self, min_tokens: int = 256) -> None:
        self.min_tokens = min_tokens
        self.prune_s = _PRIOR_PRUNE_S
        self.prefill_s = _PRIOR_PREFILL_S
        self.compression = _PRIOR_COMPRESSION
        self._lock = threading.Lock()

    def decide(self, context_tokens: int) -> Decision:
        with self._lock:
            saving = context_tokens * self.compression * self.prefill_s
            cost = context_tokens * self.prune_s
        if context_tokens < self.min_tokens:
            return Decision(False, "context_too_short", saving, cost)
        if saving <= cost:
            return Decision(False, "costs_more_than_it_saves", saving, cost)
        return Decision(True, "pays_off", saving, cost)

    def observe_pruning(self, context_tokens: int, seconds: float, compression: float) -> None:
        if context_tokens <= 0:
            return
        with self._lock:
            self.prune_s = _ewma(self.prune_s, seconds / context_tokens)
            self.compression = _ewma(self.compression, min(max(compression, 0.0), 1.0))

    def observe_upstream(self, prompt_tokens: int, seconds: float, completion_tokens: int = 0) -> None:
        """One upstream answer: `seconds` to its first streamed token (`completion_tokens=0`), or for a whole
        answer with `completion_tokens` generated."""
        weight = prompt_tokens + DECODE_WEIGHT * completion_tokens
        if prompt_tokens <= 0 or seconds <= 0 or weight <= 0:
            return
        with self._lock:
            self.prefill_s = _ewma(self.prefill_s, seconds / weight)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {"prune_s_per_token": self.prune_s, "prefill_s_per_token": self.prefill_s,
                    "compression": self.compression}  # fmt: skip


def _ewma(old: float, new: float) -> float:
    return (1 - _ALPHA) * old + _ALPHA * new
