"""Logits processors that make an LLM's output satisfy a format: Deco-G guidance and a hard-mask baseline.

Deco-G (Deng, Kung, Peng 2025, arXiv 2510.03595), after Ctrl-G (joshuacnf/Ctrl-G): the next-token distribution is

    p(v | x_1..t, format) ∝ p_LLM(v | x_1..t) * p_HMM(format completed within the budget | x_1..t, v) ** weight

with the HMM term from the forward vector and the backward tables (`backward.py`):

    p_HMM(done | x, v) = [sum_z alpha(z) B[z, v] L(delta(s, v), z)] / [sum_z alpha(z) B[z, v]]
    L(s', z) = sum_z' T[z, z'] W_[lo, hi](s', z')

Every token after which the format can no longer be completed within the remaining budget gets probability
zero, whatever the HMM says, so compliance is guaranteed (EOS is forced once the budget runs out in an accepting
state). Budget: `max_new_tokens` counts every generated token including the closing EOS; `min_new_tokens` is the
least number of tokens before EOS.

Choice points (`TokenDFA.choice_states`: where the fixed text ahead branches, as among an enum's options or at the
sign-or-digit that opens a number) get no HMM term: the LLM alone picks among the tokens that can still finish.
What is chosen there is content, which verdict or which number, and every option completes the format; the HMM
term would only weigh how well a small HMM predicts each option's remaining characters, a bias against options
of more or rarer tokens. With the shipped H=128 HMM, judging SQuAD items (`{"verdict": "correct"|"incorrect"}`,
where "incorrect" is `inc` + `orrect`) said "correct" 189 times in 200 on balanced items. Leaving task content to
the LLM and format to the HMM is Deco-G's own division of labour.

Per step (the cost that matters; Deco-G's reason for pruning): the candidate tokens of the current DFA state are
grouped by next state. The largest group (in free-text states: almost the whole vocabulary) is scored by one
(2, K) @ (K, V) product, numerator and denominator together; the other groups (partial pivots, pending UTF-8
bytes: a few thousand tokens at most) by products over their emission rows only. HMM state pruning keeps the K
most probable hidden states covering a share `prune_mass` of the forward mass, so K << H and the product shrinks
with it; `stats()` reports K and the mass kept. The product reads K rows of the (H, V) emission matrix, so it is
memory-bound (about 0.2 MB per kept state at V = 49,152); `candidate_gap` removes it: only the tokens the LLM
gives a chance (within that many nats of its best logit) get the exact term, the rest of the group a shared one.
The class defaults to exact scoring; the service, the evals and the benchmark use `decoding.decog.guided.
DEFAULT_CANDIDATE_GAP` (10 nats). It only applies within the bulk group (2,048+ tokens to one next state: free
text, string content); the tokens that move the format on (a pivot's start, a closing quote) are in small groups,
always scored exactly.
Small per-step arithmetic runs in numpy (far less per-call overhead than torch on arrays of size H), the skinny
products through torch's BLAS.

Both processors follow the transformers `LogitsProcessor` contract, `__call__(input_ids (1, T), scores (1, V))`,
and any token loop that passes the same shapes: the first call fixes the prompt length, each later call brings
the tokens generated since (normally one). They are stateful: one processor per request (or `reset()`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from prunekit.decoding.decog.backward import BackwardTables, get_backward_tables
from prunekit.decoding.decog.errors import GuidanceError, VocabularyMismatchError
from prunekit.decoding.decog.hmm import HMM
from prunekit.decoding.decog.token_dfa import DEAD, TokenDFA

__all__ = ["DecoGProcessor", "HardMaskProcessor"]

log = logging.getLogger(__name__)

LOG_FLOOR = -1e4  # HMM term for a feasible token whose lookahead underflows (the hard check still allows it)
BULK_MIN_TOKENS = 2048  # a next-state group this large is scored with one full-vocabulary product


@dataclass
class _Plan:
    """Per DFA state: the allowed tokens grouped by next state (largest first), and additive masks over V."""

    group_states: np.ndarray  # (G,) next DFA state of each group
    group_ids: list[np.ndarray]  # token ids of each group
    neg_blocked: np.ndarray  # (V,) float32: 0 where the token is allowed in this state, -inf elsewhere
    neg_bulk: np.ndarray | None  # (V,) float32: 0 on group 0 (when scored densely), -inf elsewhere
    small: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, np.ndarray]]  # groups -> ids, group of each, bounds


def _plan(dfa: TokenDFA, state: int) -> _Plan:
    key = ("guidance_plan", state, BULK_MIN_TOKENS)
    if key not in dfa.cache:
        groups = dfa.groups(state)
        ids = [g.astype(np.int64) for _, g in groups]
        neg = np.full(dfa.vocab_size, -np.inf, dtype=np.float32)
        for t in ids:
            neg[t] = 0.0
        neg_bulk = None
        if groups and len(ids[0]) >= BULK_MIN_TOKENS:
            neg_bulk = np.full(dfa.vocab_size, -np.inf, dtype=np.float32)
            neg_bulk[ids[0]] = 0.0
        dfa.cache[key] = _Plan(np.array([s for s, _ in groups], dtype=np.int64), ids, neg, neg_bulk, {})
    return dfa.cache[key]


def _small_columns(plan: _Plan, groups: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids of the given groups, concatenated; for each the index of its group in `groups`; and where each
    group's tokens start and end in that concatenation (cached)."""
    if groups not in plan.small:
        sizes = [len(plan.group_ids[g]) for g in groups]
        ids = np.concatenate([plan.group_ids[g] for g in groups])
        which = np.repeat(np.arange(len(groups)), sizes)
        plan.small[groups] = (ids, which, np.concatenate([[0], np.cumsum(sizes)]))
    return plan.small[groups]


class _FormatTracker:
    """Shared bookkeeping: prompt length, tokens seen, DFA state, and the feasibility of the budget."""

    def __init__(self, dfa: TokenDFA, max_new_tokens: int, min_new_tokens: int) -> None:
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise GuidanceError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        if min_new_tokens < 0:
            raise GuidanceError(f"min_new_tokens must be >= 0, got {min_new_tokens}")
        dfa.check_budget(max_new_tokens, min_new_tokens)  # FormatBudgetError (a 400) when impossible
        self.dfa = dfa
        self.max_new_tokens = max_new_tokens
        self.min_new_tokens = min_new_tokens
        self._reach = dfa.reachable_lengths(max_new_tokens)  # (M+1, S) bool
        for state in range(dfa.num_states):  # per-state plans, cached on the DFA: built once, not mid-decode
            _plan(dfa, state)
        self._dist = dfa.min_tokens_to_finish()  # (S,)
        self._eos = torch.tensor(dfa.eos_token_ids, dtype=torch.long)
        self.reset()

    def reset(self) -> None:
        """Forget the request: the next call starts a new one."""
        self.state = self.dfa.initial_state
        self.generated = 0
        self.prompt_len: int | None = None
        self._last_token: int | None = None

    # -- window of lengths for the tokens after the next one
    def window(self) -> tuple[int, int]:
        g = self.generated
        return max(0, self.min_new_tokens - g), self.max_new_tokens - g - 1

    def feasible(self, next_states: np.ndarray) -> np.ndarray:
        """(G,) bool: can each next state still reach the final state within the window?"""
        lo, hi = self.window()
        if hi < 0:
            return np.zeros(len(next_states), dtype=bool)
        if lo == 0:
            return self._dist[next_states] <= hi
        return self._reach[lo : hi + 1, next_states].any(axis=0)

    def sync(self, input_ids: Any, scores: Any) -> list[int]:
        """Check shapes, and return the tokens generated since the last call (in order)."""
        if input_ids.dim() != 2 or input_ids.shape[0] != 1 or scores.dim() != 2 or scores.shape[0] != 1:
            raise GuidanceError(
                f"format guidance runs one sequence at a time: got input_ids {tuple(input_ids.shape)}, "
                f"scores {tuple(scores.shape)} (expected (1, T) and (1, V))"
            )
        if scores.shape[1] < self.dfa.vocab_size:
            raise VocabularyMismatchError(
                f"the model scores {scores.shape[1]} tokens but the format DFA has {self.dfa.vocab_size}"
            )
        length = int(input_ids.shape[1])
        if self.prompt_len is None:
            self.prompt_len = length
            self._last_token = int(input_ids[0, -1]) if length else None
            return []
        seen = self.prompt_len + self.generated
        if seen == 0:  # an empty prompt: nothing to check yet
            tail = [None, *input_ids[0].tolist()]
        else:  # the last token seen, then the new ones
            tail = input_ids[0, seen - 1 :].tolist() if length >= seen else []
        if not tail or tail[0] != self._last_token:
            raise GuidanceError(
                "this processor already follows another sequence: create one processor per request (or reset())"
            )
        new = [int(t) for t in tail[1:]]
        if new:
            self._last_token = new[-1]
        return new

    def advance(self, token: int) -> bool:
        """Step the DFA; False (and nothing changes) once the output is finished: padding after EOS is ignored."""
        if self.state == self.dfa.final_state:
            return False
        nxt = self.dfa.step(self.state, token)
        if nxt == DEAD:
            raise GuidanceError(
                f"token {token} at step {self.generated} is not allowed by the format: the decoding loop must apply "
                "the processor's scores (the returned -inf entries) before choosing a token"
            )
        self.state = nxt
        self.generated += 1
        return True

    def done_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """After EOS (a batch padding on): only EOS again."""
        out = torch.full_like(scores, -math.inf)
        out[0, self._eos.to(scores.device)] = 0.0
        return out


class HardMaskProcessor:
    """The same DFA as a hard mask (Outlines/XGrammar style): only "can still finish within budget", no lookahead."""

    def __init__(self, token_dfa: TokenDFA, max_new_tokens: int, min_new_tokens: int = 0) -> None:
        self.tracker = _FormatTracker(token_dfa, max_new_tokens, min_new_tokens)
        self._time = 0.0
        self._steps = 0

    def reset(self) -> None:
        self.tracker.reset()

    @property
    def state(self) -> int:
        return self.tracker.state

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        tr = self.tracker
        for token in tr.sync(input_ids, scores):
            tr.advance(token)
        if tr.state == tr.dfa.final_state:
            return tr.done_scores(scores)
        row = _row(scores, tr.dfa.vocab_size)  # (V,)
        out = _widen(torch.from_numpy(row + _neg_blocked(tr, _plan(tr.dfa, tr.state))), scores)
        self._steps += 1
        self._time += time.perf_counter() - t0
        return out

    def stats(self) -> dict[str, float]:
        return {"steps": self._steps, "ms_per_step": 1000 * self._time / max(self._steps, 1)}


def _neg_blocked(tr: _FormatTracker, plan: _Plan) -> np.ndarray:
    """(V,) 0 / -inf: -inf for tokens not allowed now (not allowed in the state, or unable to finish in time)."""
    feas = tr.feasible(plan.group_states)
    if feas.all():
        return plan.neg_blocked
    if not feas.any():
        raise GuidanceError("no token can complete the format within the budget (internal error: please report)")
    neg = np.full_like(plan.neg_blocked, -np.inf)
    for ok, ids in zip(feas, plan.group_ids, strict=True):
        if ok:
            neg[ids] = 0.0
    return neg


def _row(scores: torch.Tensor, vocab_size: int, dtype: Any = np.float32) -> np.ndarray:
    """The (V,) scores of the single sequence as a numpy array (a view when they already live on the CPU)."""
    row = scores[0, :vocab_size].detach()
    if row.dtype not in (torch.float32, torch.float64):  # fp16 / bf16 logits from an accelerator
        row = row.float()
    return row.cpu().numpy().astype(dtype, copy=False)


def _widen(row: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """(V,) -> (1, V') like `scores`: the model may score more tokens than the tokenizer has (-inf there)."""
    row = row.to(scores.device, scores.dtype)
    if scores.shape[1] == row.shape[0]:
        return row[None]
    out = torch.full_like(scores, -math.inf)
    out[0, : row.shape[0]] = row
    return out


class DecoGProcessor:
    """Deco-G guidance: LLM log-probs + weight * log p_HMM(format done in time | prefix, v), renormalised.

    `prune_mass`: keep the most probable hidden states up to this share of the forward mass (None: all).
    `weight`: exponent of the HMM term (1.0 as in Ctrl-G; 0 gives the hard mask, renormalised).
    `candidate_gap`: None (default) scores every allowed token exactly. A number of nats: in free-text states,
    only tokens whose LLM logit is within `candidate_gap` of the best get the exact HMM term; the others get the
    token-independent term sum_z alpha(z) L(z) / sum_z alpha(z) (as if the token said nothing about the hidden
    state). Compliance stays exact; only the weights of tokens the LLM deems negligible change.
    `tables`: precomputed backward tables (else from the LRU cache).

    The per-step math runs in numpy on the CPU (small arrays: numpy's per-call overhead is a fraction of
    torch's); the HMM must live on the CPU. Scores may live anywhere: the result goes back to their device.

    >>> from prunekit.decoding.decog import TokenVocabulary, compile_token_dfa
    >>> vocab = TokenVocabulary.from_strings([None, "a", "4", "2"], eos_token_ids=[0])  # a toy tokenizer
    >>> dfa = compile_token_dfa(r"regex:\\d+", vocab)
    >>> proc = DecoGProcessor(HMM.random(hidden_size=4, vocab_size=vocab.size, seed=0), dfa, max_new_tokens=4)
    >>> scores = proc(torch.tensor([[1]]), torch.zeros(1, 4))  # (1, T), (1, V) -> (1, V) log-probs, -inf off-format
    >>> scores.exp().tolist()  # EOS and "a" are off-format at the first step; the digits share the mass
    [[0.0, 0.0, 0.5, 0.5]]
    """

    def __init__(
        self,
        hmm: HMM,
        token_dfa: TokenDFA,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        *,
        prune_mass: float | None = None,
        weight: float = 1.0,
        candidate_gap: float | None = None,
        tables: BackwardTables | None = None,
    ) -> None:
        if hmm.vocab_size != token_dfa.vocab_size:
            raise VocabularyMismatchError(
                f"the HMM has {hmm.vocab_size} tokens, the format DFA {token_dfa.vocab_size}: use one tokenizer"
            )
        if hmm.device.type != "cpu":
            raise GuidanceError(
                f"the HMM must be on the CPU for guidance, it is on {hmm.device}: use hmm.to(device='cpu')"
            )
        if prune_mass is not None and not 0.0 < prune_mass <= 1.0:
            raise GuidanceError(f"prune_mass must be in (0, 1] or None, got {prune_mass}")
        if candidate_gap is not None and candidate_gap <= 0:
            raise GuidanceError(f"candidate_gap must be a positive number of nats or None, got {candidate_gap}")
        self.tracker = _FormatTracker(token_dfa, max_new_tokens, min_new_tokens)
        self.hmm = hmm
        self.weight = float(weight)
        self.prune_mass = prune_mass
        self.candidate_gap = candidate_gap
        need = max_new_tokens - 1  # longest window after a candidate token
        if tables is None or tables.max_len < need or tables.hmm is not hmm or tables.dfa is not token_dfa:
            tables = get_backward_tables(hmm, token_dfa, need)
        self.tables = tables
        # numpy views of the parameters and tables (no copies)
        self._emission = hmm.emission.numpy()  # (H, V)
        self._emission_t = hmm.emission_t.numpy()  # (V, H)
        self._transition = hmm.transition.numpy()  # (H, H)
        self._log_c = tables.log_c.numpy()  # (K+1, S, H)
        self._log_cum = tables.log_cum.numpy()  # (K+1, S, H)
        self._dtype = self._emission.dtype
        self._tiny = np.finfo(self._dtype).tiny
        self.reset()

    def reset(self) -> None:
        self.tracker.reset()
        self._alpha = self.hmm.initial.numpy().copy()  # (H,): p(z_{t+1} | x_1..t)
        self._steps = 0
        self._time = 0.0
        self._kept_sum = 0.0
        self._mass_sum = 0.0
        self._exact_sum = 0
        self._choice_steps = 0  # steps at choice points: LLM only, no HMM term (module doc)
        self.last_kept = self.hmm.hidden_size

    @property
    def state(self) -> int:
        return self.tracker.state

    @property
    def alpha(self) -> torch.Tensor:
        """The forward vector p(z_{t+1} | x_1..t), (H,)."""
        return torch.from_numpy(self._alpha)

    def stats(self) -> dict[str, float]:
        """Steps, mean time per step, steps at choice points, and pruning over the other steps (those with an HMM
        term): mean hidden states kept, forward mass kept, exactly scored tokens."""
        n = max(self._steps, 1)
        scored = max(self._steps - self._choice_steps, 1)
        return {
            "steps": self._steps,
            "ms_per_step": 1000 * self._time / n,
            "choice_steps": self._choice_steps,
            "kept_states": self._kept_sum / scored,
            "kept_mass": self._mass_sum / scored,
            "exact_tokens": self._exact_sum / scored,
            "hidden_size": self.hmm.hidden_size,
        }

    # ------------------------------------------------------------------ per token
    def _observe(self, token: int) -> None:
        if not self.tracker.advance(token):
            return
        nxt = _mm((self._alpha * self._emission_t[token])[None], self._transition)[0]  # (H,)
        total = nxt.sum()
        if not np.isfinite(total) or total <= 0:
            # The HMM gives this token no probability: keep the prior rather than a zero vector.
            nxt = _mm(self._alpha[None], self._transition)[0]
            total = nxt.sum()
        self._alpha = nxt / total

    def _keep(self) -> tuple[np.ndarray | None, float]:
        if self.prune_mass is None or self.prune_mass >= 1.0:
            return None, 1.0
        order = np.argsort(-self._alpha)
        cum = np.cumsum(self._alpha[order])
        k = min(int(np.searchsorted(cum, self.prune_mass * cum[-1])) + 1, len(order))
        return np.sort(order[:k]), float(cum[k - 1] / cum[-1])  # ascending ids: friendlier row gathers

    def _log_lookahead(self, states: np.ndarray, lo: int, hi: int, keep: np.ndarray | None) -> np.ndarray:
        """log L(s', z) = log sum_z' T[z, z'] W_[lo, hi](s', z'), for next states (n,) and z in keep: (n, K)."""
        if lo <= 0:
            log_w = self._log_cum[min(hi, self.tables.max_len)][states]  # (n, H)
        else:
            log_w = _logsumexp0(self._log_c[lo : min(hi, self.tables.max_len) + 1][:, states])  # (n, H)
        trans = self._transition if keep is None else self._transition[keep]  # (K, H)
        mx = log_w.max(axis=1, keepdims=True)
        mx[~np.isfinite(mx)] = 0.0
        with np.errstate(divide="ignore"):
            return np.log(_mm(np.exp(log_w - mx), trans.T)) + mx

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        tr = self.tracker
        for token in tr.sync(input_ids, scores):
            self._observe(token)
        if tr.state == tr.dfa.final_state:
            return tr.done_scores(scores)
        normalised = torch.log_softmax(torch.from_numpy(self._guided(_row(scores, tr.dfa.vocab_size, self._dtype))), 0)
        if math.isnan(normalised[0]):  # all -inf in, NaN out (one entry tells, without another pass over V):
            # every feasible token had -inf from the LLM (another processor banned them): follow the format alone.
            normalised = torch.log_softmax(torch.from_numpy(_neg_blocked(tr, _plan(tr.dfa, tr.state)).copy()), 0)
        result = _widen(normalised, scores)
        self._steps += 1
        self._time += time.perf_counter() - t0
        return result

    def _guided(self, row: np.ndarray) -> np.ndarray:
        """(V,) raw LLM scores -> (V,) unnormalised guided scores, -inf off-format (a new array)."""
        tr = self.tracker
        plan = _plan(tr.dfa, tr.state)
        if tr.dfa.choice_states is not None and tr.dfa.choice_states[tr.state]:
            self._choice_steps += 1
            return row + _neg_blocked(tr, plan)  # the hard mask's step: the LLM alone (module doc)
        feas = tr.feasible(plan.group_states)  # (G,)
        if not feas.any():
            raise GuidanceError("no token can complete the format within the budget (internal error: please report)")
        lo, hi = tr.window()
        keep, mass = self._keep()
        self.last_kept = self.hmm.hidden_size if keep is None else len(keep)
        self._kept_sum += self.last_kept
        self._mass_sum += mass
        alpha = self._alpha if keep is None else self._alpha[keep]  # (K,)

        rows = np.flatnonzero(feas)  # feasible groups; row r of `u` belongs to group rows[r]
        log_l = self._log_lookahead(plan.group_states[rows], lo, hi, keep)  # (n, K)
        shift = log_l.max(axis=1)  # (n,)
        shift[~np.isfinite(shift)] = 0.0
        u = alpha[None, :] * np.exp(log_l - shift[:, None])  # (n, K): alpha(z) L(s', z) / e^shift, <= alpha(z)
        # log p(done | x, v) = log(u_g . B[:, v] / alpha . B[:, v]) + shift_g, the ratio in [0, 1]. Terms are kept
        # relative to the first feasible group (a constant offset cancels in the final log_softmax).
        w = self.weight
        offset = w * (shift - shift[0])  # (n,)
        # Zero-padded back to H for the products over token rows: cheaper than gathering the kept columns.
        h = self._alpha.shape[0]
        u_h, alpha_h = (u, alpha) if keep is None else (_pad(u, keep, h), _pad(alpha, keep, h))

        if plan.neg_bulk is not None and feas[0]:
            out = self._bulk_scores(row, plan, (u[0], alpha), (u_h[0], alpha_h), keep)
            first = 1
        else:
            out = np.full_like(row, -np.inf)
            first = 0
        small = tuple(int(r) for r in rows[first:])
        if small:
            ids, which, bounds = _small_columns(plan, small)  # (n_s,), (n_s,) index into `small`, (G_s + 1,)
            cols = self._small_rows(plan, small, ids)  # (n_s, H)
            # Each token needs only its own group's numerator: one matrix-vector product per group over its
            # tokens' rows (a full (G_s + 1, H) @ (H, n_s) product would compute G_s times as much).
            num = np.empty(len(ids), dtype=cols.dtype)
            for j in range(len(small)):
                lo_j, hi_j = bounds[j], bounds[j + 1]
                num[lo_j:hi_j] = cols[lo_j:hi_j] @ u_h[first + j]
            out[ids] = row[ids] + w * self._log_ratio(num, cols @ alpha_h) + offset[first:][which]
            self._exact_sum += len(ids)
        return out

    def _small_rows(self, plan: _Plan, groups: tuple[int, ...], ids: np.ndarray) -> np.ndarray:
        """Emission rows (n_s, H) of the small groups' tokens, cached with the backward tables (same HMM and DFA)."""
        key = ("small_rows", id(plan), groups)
        cache = self.tables.cache
        if key not in cache:
            cache[key] = self._emission_t[ids]
        return cache[key]

    def _bulk_scores(
        self,
        row: np.ndarray,
        plan: _Plan,
        kept: tuple[np.ndarray, np.ndarray],
        padded: tuple[np.ndarray, np.ndarray],
        keep: np.ndarray | None,
    ) -> np.ndarray:
        """Scores of group 0 (most of the vocabulary), -inf elsewhere: (V,), relative to group 0's offset.

        `kept`: (u_0, alpha) over the kept hidden states (K,); `padded`: the same zero-padded to (H,).
        """
        w = self.weight
        u0, alpha = kept
        assert plan.neg_bulk is not None
        if self.candidate_gap is not None:
            # Exact HMM term only for the tokens the LLM gives a chance (within `candidate_gap` nats of its best).
            cand = np.flatnonzero(row >= row.max() - self.candidate_gap)
            cand = cand[plan.neg_bulk[cand] == 0.0]  # (n_c,) group-0 tokens among them
            if 4 * len(cand) <= len(row):  # else the dense product is as cheap
                prior = self._log_ratio(np.array([u0.sum()]), np.array([alpha.sum()]))[0]
                out = row + plan.neg_bulk  # (V,)
                out += w * prior
                cols = self._emission_t[cand]  # (n_c, H): token rows, contiguous
                prod = _mm(np.stack(padded), cols.T)  # (2, n_c)
                out[cand] = row[cand] + w * self._log_ratio(prod[0], prod[1])
                self._exact_sum += len(cand)
                return out
        # One (2, K) @ (K, V) product gives every numerator of group 0 and every denominator: this product (reading
        # K rows of the emission matrix) is the whole per-step cost, hence pruning.
        if keep is None or 2 * len(keep) > len(self._alpha):
            # Copying more than half of the rows costs more than reading them all: use (H, V) with zero padding.
            prod = _mm(np.stack(padded), self._emission)  # (2, V)
        else:
            # torch's row gather: twice as fast as numpy's take here (the copy is half of this step's cost)
            rows = torch.index_select(self.hmm.emission, 0, torch.from_numpy(keep)).numpy()  # (K, V)
            prod = _mm(np.stack([u0, alpha]), rows)  # (2, K) @ (K, V)
        term = self._log_ratio(prod[0], prod[1])  # in place in prod[0]
        term *= w
        term += row
        term += plan.neg_bulk
        self._exact_sum += len(plan.group_ids[0])
        return term

    def _log_ratio(self, num: np.ndarray, den: np.ndarray) -> np.ndarray:
        """In place on `num`: log(num / den) floored at LOG_FLOOR. num <= den always (u <= alpha), so no +inf;
        den = 0 (the HMM never emits the token) gives 0 / tiny = 0 -> LOG_FLOOR rather than NaN."""
        np.divide(num, np.maximum(den, self._tiny), out=num)
        with np.errstate(divide="ignore"):
            np.log(num, out=num)
        return np.maximum(num, LOG_FLOOR, out=num)


SMALL_PRODUCT = 1 << 17  # multiply-adds: below this, numpy's single-threaded product beats a call into torch


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b. Small products (the forward update, the lookahead, a few candidate tokens) in numpy: between two
    llama.cpp steps, with its threads still spinning, a torch call on a (1, 128) @ (128, 128) took 60-110 us against
    25 us in numpy (measured in the decode loop of the 2-core VM). Large ones (the (2, K) @ (K, V) bulk product)
    through torch (zero-copy): torch's BLAS follows the process's torch thread setting, while numpy's OpenBLAS
    starts threads of its own, whose spinning costs milliseconds on a busy machine, and it is several times slower
    on that skinny shape."""
    if a.shape[0] * a.shape[1] * b.shape[1] < SMALL_PRODUCT:
        return a @ b
    return torch.mm(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def _pad(x: np.ndarray, keep: np.ndarray, size: int) -> np.ndarray:
    """Scatter the kept hidden states' values (..., K) back into zeros (..., H)."""
    out = np.zeros((*x.shape[:-1], size), dtype=x.dtype)
    out[..., keep] = x
    return out


def _logsumexp0(x: np.ndarray) -> np.ndarray:
    """logsumexp over axis 0, -inf where every term is -inf."""
    mx = x.max(axis=0)
    safe = np.where(np.isfinite(mx), mx, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(x - safe).sum(axis=0)) + safe
