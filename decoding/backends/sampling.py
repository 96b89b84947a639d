"""Choosing the next token from logits: greedy, temperature and nucleus (top-p) sampling."""

from __future__ import annotations

import torch

__all__ = ["make_generator", "pick_next_token"]


def make_generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen


def pick_next_token(scores: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """Pick a token id from one row of scores `(V,)`; `temperature == 0` is greedy."""
    if temperature == 0.0:
        return int(torch.argmax(scores))
    probs = torch.softmax(scores.float() / temperature, dim=-1)  # (V,)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))
