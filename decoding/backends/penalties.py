"""Penalties on the logits of tokens the answer has already used: OpenAI's `frequency_penalty` and
`presence_penalty`, and the repetition penalty that guards chat against loops.

Frequency and presence, as OpenAI documents them, over the tokens generated so far (not the prompt):
    logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty
Positive values discourage repetition; negative ones encourage it.

The repetition penalty is CTRL's (Keskar et al. 2019), as llama.cpp's `repeat_penalty` and transformers'
`repetition_penalty` apply it: every token seen in the last `window` tokens of the answer has its logit divided by
the penalty when positive, multiplied when negative (so it always moves down). Greedy decoding of a small model
falls into loops (SmolLM2-135M on "What is the capital of France?": `la France, la France, ...` until
max_tokens); a mild penalty over a recent window breaks them while leaving an answer free to reuse a word it
needs. Unlike llama.cpp's CLI and vLLM, the window holds the answer only, not the prompt: an answer that repeats
the question's words ("The capital of France is ...") is what a short QA answer should do.

Both apply to the model's own logits, before logits processors such as format guidance. They run at every token,
so they touch only the few ids the answer used (a numpy index set), never a pass over the whole vocabulary.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import TypeVar

import numpy as np
import torch

from prunekit.decoding.types import GenerationParams

__all__ = ["DEFAULT_REPETITION_WINDOW", "TokenPenalties"]

# llama.cpp's `repeat_last_n` default: long enough to span a looping phrase, short enough that a long answer may
# come back to its subject's words.
DEFAULT_REPETITION_WINDOW = 64

Row = TypeVar("Row", np.ndarray, torch.Tensor)


class TokenPenalties:
    """Counts one answer's tokens and penalises their logits; one per request (it is stateful).

    >>> pen = TokenPenalties(frequency=0.5, presence=0.2)
    >>> pen.observe(3); pen.observe(3)
    >>> pen.apply(np.zeros(5)).tolist()
    [0.0, 0.0, 0.0, -1.2, 0.0]
    >>> guard = TokenPenalties(repetition=2.0)
    >>> guard.observe(0); guard.observe(1)
    >>> guard.apply(np.array([4.0, -4.0, 4.0])).tolist()
    [2.0, -8.0, 4.0]
    """

    def __init__(
        self,
        frequency: float = 0.0,
        presence: float = 0.0,
        repetition: float = 1.0,
        window: int = DEFAULT_REPETITION_WINDOW,
    ) -> None:
        if not repetition > 0.0:
            raise ValueError(f"the repetition penalty must be positive, got {repetition!r}")
        if window < 1:
            raise ValueError(f"the repetition window must be at least 1 token, got {window!r}")
        self.frequency = float(frequency)
        self.presence = float(presence)
        self.repetition = float(repetition)
        self.counts: Counter[int] = Counter()  # the whole answer (frequency, presence)
        self._recent: deque[int] = deque()  # the last `window` tokens, oldest first
        self._in_window: Counter[int] = Counter()  # their counts: the keys are the ids the repetition penalty hits
        self._window = window

    @classmethod
    def for_params(cls, params: GenerationParams) -> TokenPenalties:
        """The penalties `params` ask for, as every in-process backend applies them."""
        return cls(params.frequency_penalty, params.presence_penalty, params.repetition_penalty or 1.0)

    def observe(self, token: int) -> None:
        """Record a token the answer just took."""
        self.counts[token] += 1
        if self.repetition == 1.0:
            return
        self._recent.append(token)
        self._in_window[token] += 1
        if len(self._recent) > self._window:
            old = self._recent.popleft()
            self._in_window[old] -= 1
            if not self._in_window[old]:
                del self._in_window[old]

    def apply(self, logits: Row) -> Row:
        """Penalise `logits` (V,) in place and return them: pass a copy when the caller's row must stay intact."""
        if self._in_window:
            ids = np.fromiter(self._in_window, dtype=np.int64, count=len(self._in_window))  # (K,), K <= window
            if isinstance(logits, torch.Tensor):
                index = torch.from_numpy(ids)
                picked = logits[index]
                logits[index] = torch.where(picked > 0, picked / self.repetition, picked * self.repetition)
            else:
                picked = logits[ids]
                logits[ids] = np.where(picked > 0, picked / self.repetition, picked * self.repetition)
        if self.counts and (self.frequency or self.presence):
            ids = list(self.counts)
            counts = np.fromiter(self.counts.values(), dtype=np.float64, count=len(ids))
            penalty = self.frequency * counts + self.presence
            if isinstance(logits, torch.Tensor):
                logits[torch.tensor(ids)] -= torch.from_numpy(penalty).to(logits.dtype)
            else:
                logits[ids] -= penalty.astype(logits.dtype)
        return logits
