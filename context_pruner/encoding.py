"""Model inputs: `[CLS] question [SEP] title context [SEP]`, windows over long contexts, padded batches.

Shared by inference and training so both see exactly the same layout (Provence, arXiv 2501.16214, prepends the
title to the passage). Questions, titles and contexts are tokenised separately without special tokens and
concatenated: for WordPiece this gives the same ids as tokenising the pair, and it lets one question's ids be
reused across all of its contexts and one context be cut into windows without re-tokenising.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Block", "block_windows", "build_block", "collate"]

IGNORE = -100  # label of positions left out of the loss (question, title handled by caller, specials, padding)


@dataclass(frozen=True)
class Block:
    """One encoder input. `ctx_start:ctx_end` are the context tokens it holds; they sit at `ctx_offset` in `ids`."""

    item: int  # which (question, context) pair this block belongs to
    ids: np.ndarray  # (T,) int64
    token_types: np.ndarray  # (T,) int64: 0 question side, 1 title + context
    title_offset: int  # position of the first title token in ids
    n_title: int
    ctx_offset: int  # position of the first context token in ids
    ctx_start: int  # first context token (index into the context's own tokens)
    ctx_end: int  # one past the last


def block_windows(n_tokens: int, budget: int, stride: int) -> list[tuple[int, int]]:
    """Windows `[start, end)` of at most `budget` tokens covering `n_tokens`, neighbours sharing `stride` tokens.

    >>> block_windows(10, 4, 1)
    [(0, 4), (3, 7), (6, 10)]
    """
    if budget < 1:
        raise ValueError(f"no room for context tokens (budget {budget}): raise max_length or shorten the question")
    if n_tokens <= budget:
        return [(0, n_tokens)]
    step = max(1, budget - min(stride, budget // 2))  # an overlap above half the window would just repeat work
    windows = []
    start = 0
    while True:
        end = min(start + budget, n_tokens)
        windows.append((start, end))
        if end == n_tokens:
            return windows
        start += step


def build_block(
    item: int,
    question_ids: Sequence[int],
    title_ids: Sequence[int],
    ctx_ids: Sequence[int],
    ctx_start: int,
    ctx_end: int,
    cls_id: int,
    sep_id: int,
) -> Block:
    """Assemble `[CLS] q [SEP] title ctx[ctx_start:ctx_end] [SEP]`."""
    q, t, c = list(question_ids), list(title_ids), list(ctx_ids[ctx_start:ctx_end])
    ids = np.asarray([cls_id, *q, sep_id, *t, *c, sep_id], dtype=np.int64)
    types = np.zeros(len(ids), dtype=np.int64)
    types[len(q) + 2 :] = 1
    title_offset = len(q) + 2
    return Block(item, ids, types, title_offset, len(t), title_offset + len(t), ctx_start, ctx_end)


def collate(
    sequences: Sequence[np.ndarray], token_types: Sequence[np.ndarray], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad to the longest sequence of the batch (callers sort by length, so padding stays small)."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)  # (B, T)
    types = np.zeros((len(sequences), width), dtype=np.int64)  # (B, T)
    mask = np.zeros((len(sequences), width), dtype=np.int64)  # (B, T)
    for i, (s, tt) in enumerate(zip(sequences, token_types, strict=True)):
        ids[i, : len(s)] = s
        types[i, : len(s)] = tt
        mask[i, : len(s)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)
