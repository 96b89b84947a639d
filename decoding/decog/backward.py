"""Backward tables: the probability, under the HMM, that the rest of the output completes the format in time.

The recurrence is Ctrl-G's (joshuacnf/Ctrl-G, `ctrlg/utils.py`), which Deco-G (arXiv 2510.03595) builds on;
notation:

    B (H, V)  emission,  T (H, H)  transition,  delta(s, v)  the token DFA,  F  its final state (after EOS).

    C_k(s, z) = P(the next k tokens drive the DFA from s to F, i.e. the k-th is EOS | hidden state z emits the next)

    C_0(s, z) = [s == F]
    C_k(s, z) = sum_v B[z, v] sum_z' T[z, z'] C_{k-1}(delta(s, v), z')
              = sum_{s'} E[s -> s'](z) D_{k-1}(s', z),   D_{k-1}(s', z) = sum_z' T[z, z'] C_{k-1}(s', z')

where E[s -> s'](z) = sum of B[z, v] over the tokens v with delta(s, v) = s' (the edge weight; computed once).
F has no outgoing tokens, so outputs of different lengths are disjoint events and a window of lengths is a sum:

    W_[lo, hi](s, z) = sum_{k = lo}^{hi} C_k(s, z)

At a decoding step with forward vector alpha(z) = p(z_{t+1} = z | x_1..t), DFA state s and remaining window
[lo, hi] for the tokens AFTER the candidate v, the lookahead is

    p(v, format done in time | x_1..t) = sum_z alpha(z) B[z, v] sum_z' T[z, z'] W_[lo, hi](delta(s, v), z')

(`BackwardTables.log_lookahead` is the inner sum in torch: the reference that the tests hold `guidance.py`'s
per-step numpy version to). Budget conventions: lengths count every token including the closing EOS; with g tokens
generated, max_new_tokens M and min_new_tokens m, the window after the candidate is lo = max(0, m - g),
hi = M - g - 1, so the output ends with EOS at a position
in [m + 1, M], i.e. at least m tokens of text and at most M tokens in all.

Everything is in log space (float32): probabilities of long outputs reach e^-300 and beyond. The tables depend on
the HMM and the DFA only, not on the budget, so one table up to the largest length serves every budget below
it: `get_backward_tables` caches them (LRU) by (format DFA, HMM) and grows a cached table when a longer budget
comes. Cost: per length k, one (S, H) @ (H, H) product and an edge scatter: at S = 25, H = 128, K = 512 about 0.2 s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from prunekit.decoding.decog.errors import VocabularyMismatchError
from prunekit.decoding.decog.hmm import HMM
from prunekit.decoding.decog.token_dfa import TokenDFA

__all__ = ["BackwardTables", "clear_backward_cache", "get_backward_tables", "log_matmul_exp"]

log = logging.getLogger(__name__)

_CACHE: OrderedDict[tuple[str, str], BackwardTables] = OrderedDict()
CACHE_SIZE = 8
CACHE_BYTES = 512 * 2**20  # tables grow with budget x DFA states x hidden size: bound the cache by memory too
_LOCK = threading.Lock()


def log_matmul_exp(log_x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """log(exp(log_x) @ m) for log_x (n, a) and a non-negative m (a, b), stable row by row; -inf rows stay -inf."""
    mx = log_x.amax(dim=1, keepdim=True)  # (n, 1)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    out = (log_x - mx).exp() @ m  # (n, b)
    return out.log() + mx


class BackwardTables:
    """log C_k(s, z) for k = 0..max_len, and its running log-sum over k (see the module docstring)."""

    def __init__(self, hmm: HMM, dfa: TokenDFA, max_len: int) -> None:
        if hmm.vocab_size != dfa.vocab_size:
            raise VocabularyMismatchError(
                f"the HMM has {hmm.vocab_size} tokens but the format DFA was built over {dfa.vocab_size}: "
                "build both from the same tokenizer"
            )
        if max_len < 0:
            raise ValueError(f"max_len must be >= 0, got {max_len}")
        t0 = time.perf_counter()
        self.hmm, self.dfa, self.max_len = hmm, dfa, max_len
        self.cache: dict[Any, Any] = {}  # derived per-(HMM, DFA) data of the guidance processors
        self.edge_src, self.edge_dst, self.log_edge = _edge_weights(hmm, dfa)  # (E,), (E,), (E, H)
        s, h = dfa.num_states, hmm.hidden_size
        log_c = torch.full((max_len + 1, s, h), -torch.inf, dtype=hmm.dtype, device=hmm.device)  # (K+1, S, H)
        log_c[0, dfa.final_state] = 0.0
        trans_t = hmm.transition.t().contiguous()  # (H, H): D = C @ T^T
        src_idx = self.edge_src[:, None].expand(-1, h)  # (E, H)
        for k in range(1, max_len + 1):
            log_d = log_matmul_exp(log_c[k - 1], trans_t)  # (S, H): D_{k-1}
            terms = self.log_edge + log_d[self.edge_dst]  # (E, H): E[s -> s'](z) D_{k-1}(s', z)
            log_c[k] = _scatter_logsumexp(terms, src_idx, s)
        self.log_c = log_c
        self.log_cum = torch.logcumsumexp(log_c, dim=0)  # (K+1, S, H): log sum_{j <= k} C_j
        self.nbytes = 2 * log_c.numel() * log_c.element_size()
        log.info(
            "backward tables: %d states x %d hidden x %d lengths in %.3f s",
            s,
            h,
            max_len + 1,
            time.perf_counter() - t0,
        )

    def log_window(self, states: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """log W_[lo, hi](s, z) for the given DFA states: (n,) -> (n, H). Empty window: -inf."""
        hi = min(hi, self.max_len)
        if hi < lo or hi < 0:
            return torch.full((len(states), self.hmm.hidden_size), -torch.inf, dtype=self.log_c.dtype)
        if lo <= 0:
            return self.log_cum[hi, states]
        return torch.logsumexp(self.log_c[lo : hi + 1, states], dim=0)

    def log_lookahead(self, states: torch.Tensor, lo: int, hi: int, keep: torch.Tensor | None = None) -> torch.Tensor:
        """log sum_z' T[z, z'] W_[lo, hi](s', z') for next states s' (n,) and hidden z in `keep` (K,): (n, K)."""
        trans = self.hmm.transition if keep is None else self.hmm.transition.index_select(0, keep)  # (K, H)
        return log_matmul_exp(self.log_window(states, lo, hi), trans.t())


def _edge_weights(hmm: HMM, dfa: TokenDFA) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every DFA edge s -> s': log sum of B[z, v] over its tokens. Returns src (E,), dst (E,), log E (E, H)."""
    emission_t = hmm.emission_t  # (V, H)
    src, dst, weights = [], [], []
    for s in range(dfa.num_states):
        groups = dfa.groups(s)
        if not groups:
            continue
        ids = torch.from_numpy(np.concatenate([g for _, g in groups])).to(hmm.device)
        which = torch.repeat_interleave(
            torch.arange(len(groups), device=hmm.device), torch.tensor([len(g) for _, g in groups], device=hmm.device)
        )
        w = torch.zeros(len(groups), hmm.hidden_size, dtype=hmm.dtype, device=hmm.device)
        w.index_add_(0, which, emission_t.index_select(0, ids))  # (G, H)
        src += [s] * len(groups)
        dst += [t for t, _ in groups]
        weights.append(w)
    h = hmm.hidden_size
    log_e = torch.cat(weights).log() if weights else torch.zeros(0, h, dtype=hmm.dtype)
    as_long = {"dtype": torch.long, "device": hmm.device}
    return torch.tensor(src, **as_long), torch.tensor(dst, **as_long), log_e


def _scatter_logsumexp(terms: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """out[i] = logsumexp of the rows of `terms` (E, H) whose index (E, H, all equal per row) is i: (n, H)."""
    h = terms.shape[1]
    mx = torch.full((n, h), -torch.inf, dtype=terms.dtype, device=terms.device)
    mx.scatter_reduce_(0, index, terms, reduce="amax")
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
    acc = torch.zeros((n, h), dtype=terms.dtype, device=terms.device)
    acc.scatter_add_(0, index, (terms - mx.gather(0, index)).exp())
    return acc.log() + mx


def get_backward_tables(hmm: HMM, dfa: TokenDFA, max_len: int) -> BackwardTables:
    """Cached tables (LRU of at most `CACHE_SIZE` tables and `CACHE_BYTES`, keyed by DFA and HMM) covering
    lengths 0..max_len at least.

    Thread-safe: the cache is locked, the computation is not (two threads may build the same table once each).
    """
    key = (dfa.uid, hmm.fingerprint)
    with _LOCK:
        tables = _CACHE.get(key)
        if tables is not None and tables.max_len >= max_len:
            _CACHE.move_to_end(key)
            return tables
    tables = BackwardTables(hmm, dfa, max_len)
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is None or cached.max_len < tables.max_len:  # another thread may have built a longer one
            _CACHE[key] = tables
        _CACHE.move_to_end(key)
        while len(_CACHE) > 1 and (len(_CACHE) > CACHE_SIZE or sum(t.nbytes for t in _CACHE.values()) > CACHE_BYTES):
            _CACHE.popitem(last=False)
    return tables


def clear_backward_cache() -> None:
    with _LOCK:
        _CACHE.clear()
