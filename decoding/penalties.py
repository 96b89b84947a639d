"""OpenAI's `frequency_penalty` and `presence_penalty`: lower the logits of tokens the answer has already used.

As OpenAI documents them, over the tokens generated so far (not the prompt):
    logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty
Positive values discourage repetition (a small greedy model's `la France, la France, ...` loops); negative ones
encourage it. They apply to the model's own logits, before logits processors such as format guidance.
"""

from __future__ import annotations

from collections import Counter
from typing import TypeVar

import numpy as np
import torch

__all__ = ["TokenPenalties"]

Row = TypeVar("Row", np.ndarray, torch.Tensor)


class TokenPenalties:
    """Counts one answer's tokens and penalises their logits; one per request (it is stateful).

    >>> pen = TokenPenalties(frequency=0.5, presence=0.2)
    >>> pen.observe(3); pen.observe(3)
    >>> pen.apply(np.zeros(5)).tolist()
    [0.0, 0.0, 0.0, -1.2, 0.0]
    """

    def __init__(self, frequency: float = 0.0, presence: float = 0.0) -> None:
        self.frequency = float(frequency)
        self.presence = float(presence)
        self.counts: Counter[int] = Counter()

    def observe(self, token: int) -> None:
        self.counts[token] += 1

    def apply(self, logits: Row) -> Row:
        """Penalise `logits` (V,) in place and return them: pass a copy when the caller's row must stay intact."""
        if not self.counts:
            return logits
        ids = list(self.counts)
        penalty = self.frequency * np.fromiter(self.counts.values(), dtype=np.float64, count=len(ids)) + self.presence
        if isinstance(logits, torch.Tensor):
            logits[torch.tensor(ids)] -= torch.from_numpy(penalty).to(logits.dtype)
        else:
            logits[ids] -= penalty.astype(logits.dtype)
        return logits
