"""Choosing the next token from logits: greedy, temperature and nucleus (top-p) sampling, and the log-probabilities
of the distribution a token was drawn from (OpenAI's `logprobs`)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["make_generator", "pick_next_token", "sample_with_logprobs"]


def make_generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Which tokens `(V,)` top-p sampling keeps: the smallest most-likely prefix whose mass reaches `top_p`
    (always at least one token; Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration")."""
    sorted_probs, order = torch.sort(probs, descending=True)
    inside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
    return torch.zeros_like(inside).scatter_(0, order, inside)


def pick_next_token(scores: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> int:
    """Pick a token id from one row of scores `(V,)`; `temperature == 0` is greedy."""
    if temperature == 0.0:
        return int(torch.argmax(scores))
    probs, _ = _tempered(scores, temperature, top_p, with_logprobs=False)
    return int(torch.multinomial(probs, 1, generator=generator))


def sample_with_logprobs(
    scores: np.ndarray | torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> tuple[int, np.ndarray]:
    """`pick_next_token`'s choice (the same draw for the same generator) and the log-probabilities `(V,)` of the
    distribution it was drawn from, in one pass (top-p's sort runs once).

    `scores` are the processed logits: after penalties and logits processors (a format's mask leaves -inf), so a
    token the step could not take has -inf. Temperature divides them and top-p cuts the tail (its tokens get -inf,
    the nucleus is renormalised), as vLLM's processed log-probs do. Greedy decoding (`temperature == 0`) takes the
    argmax of a distribution it never samples from: it reports that distribution at temperature 1, whose best
    token is the one taken.

    >>> token, lp = sample_with_logprobs(np.log(np.array([0.5, 0.3, 0.2], dtype=np.float32)), 0.0, 1.0, None)
    >>> token, [round(float(p), 3) for p in np.exp(lp)]
    (0, [0.5, 0.3, 0.2])
    >>> _, lp = sample_with_logprobs(np.log(np.array([0.5, 0.3, 0.2])), 1.0, 0.7, make_generator(0))
    >>> [round(float(p), 3) for p in np.exp(lp)]
    [0.625, 0.375, 0.0]
    """
    if temperature == 0.0:  # numpy here: torch's reductions would wake its thread pool beside llama.cpp's threads
        row = np.asarray(scores, dtype=np.float32)
        shifted = row - row.max()
        return int(np.argmax(row)), shifted - np.float32(np.log(np.exp(shifted, dtype=np.float64).sum()))
    probs, logprobs = _tempered(torch.as_tensor(scores), temperature, top_p, with_logprobs=True)
    return int(torch.multinomial(probs, 1, generator=generator)), logprobs.numpy()


def _tempered(
    scores: torch.Tensor, temperature: float, top_p: float, *, with_logprobs: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The probabilities `(V,)` that sampling draws from (temperature, then top-p's nucleus) and, when asked,
    their logarithms computed stably (a token outside the nucleus: -inf)."""
    scaled = scores.float() / temperature
    probs = torch.softmax(scaled, dim=-1)
    logprobs = torch.log_softmax(scaled, dim=-1) if with_logprobs else None
    if top_p < 1.0:
        inside = _nucleus(probs, top_p)
        probs = probs.masked_fill(~inside, 0.0)
        if logprobs is not None:
            logprobs = torch.where(inside, logprobs - torch.logsumexp(logprobs[inside], dim=0), float("-inf"))
    return probs, logprobs
