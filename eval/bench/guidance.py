"""`prunekit bench decoding`: per-token overhead of Deco-G guidance over unconstrained decoding of a local model.

Deco-G (Deng, Kung, Peng 2025, arXiv 2510.03595) prunes HMM hidden states because the lookahead costs about
O(H * V) per step (Ctrl-G: O(S * H * V)). This measures the whole generation, model included: the same prompts are
decoded (greedy) with and without a logits processor, and both runs generate the same number of tokens, N:

- `unconstrained`: no format; EOS is banned until N tokens (a trivial processor, so the per-step hook itself is
  in the baseline: `eval.bench.decode` measures that hook separately);
- `hard_mask`: the format's token DFA as a hard mask, `min_new_tokens = N` (N tokens, then EOS);
- `decog_h<H>`, `decog_h<H>_pruned` (HMM state pruning, `prune_mass`): Deco-G guidance, same lengths.

Overhead = (seconds per generated token with guidance) / (seconds per token unconstrained) - 1, from the least time
over `repeats` interleaved runs (the least is the one least disturbed by other work on a shared machine). Two clocks:
`overhead` uses this process's CPU time (honest on a busy machine: waiting for a core is not counted),
`overhead_wall` the wall clock. Each guided variant also reports the processor's own `ms_per_step`, `kept_states`
and `kept_mass` (the share of the forward probability mass kept by pruning).

HMMs: pass distilled ones by hidden size (`{128: "decoding/decog/weights/hmm-smollm2-h128"}`); a size without one gets a
random HMM with peaky Dirichlet rows (`<variant>.random_hmm = 1`). Speed depends on H and on how many states pruning
keeps, which depends on the HMM: random HMMs are a stand-in for timing only.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from prunekit.decoding import GenerationParams, InvalidRequestError, LocalBackend, require_local
from prunekit.decoding.decog import (
    DecoGProcessor,
    HardMaskProcessor,
    TokenDFA,
    TokenVocabulary,
    compile_token_dfa,
    get_backward_tables,
)
from prunekit.decoding.decog.guided import DEFAULT_CANDIDATE_GAP
from prunekit.decoding.decog.hmm import HMM
from prunekit.decoding.decog.prompts import math_messages
from prunekit.eval.decoding import model_eos_id, model_vocabulary

__all__ = ["BENCH_PROBLEMS", "NoEOSProcessor", "bench_guidance"]

log = logging.getLogger(__name__)

HMMSource = HMM | str | Path  # a distilled HMM, or the folder it is saved in

DEFAULT_SPEC = "pivot:<free>The answer is <int>"
# Written for this benchmark (not from any evaluation set).
BENCH_PROBLEMS = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "A baker makes 12 loaves of bread every hour. How many loaves does he make in a 7 hour shift?",
    "Tom has 35 marbles. He gives 9 to his sister and buys 14 more. How many marbles does he have now?",
    "A garden has 6 rows of tomato plants with 8 plants in each row. How many tomato plants are there?",
)


class NoEOSProcessor:
    """Bans the given (end-of-generation) tokens until `min_tokens` tokens are out: forces the baseline's length."""

    def __init__(self, eos_ids: Sequence[int], min_tokens: int) -> None:
        self.eos = torch.tensor(sorted(eos_ids), dtype=torch.long)
        self.min_tokens = min_tokens
        self.prompt_len: int | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.prompt_len is None:
            self.prompt_len = int(input_ids.shape[1])
        if input_ids.shape[1] - self.prompt_len < self.min_tokens:
            scores[:, self.eos] = -float("inf")
        return scores


def _run(
    model: LocalBackend, prompts: Sequence[list[dict[str, str]]], make: Any, max_tokens: int, concurrency: int
) -> dict[str, Any]:
    """Generate for every prompt with fresh processors from `make()`; CPU and wall time, tokens, processor stats."""
    procs: list[Any] = []

    def one(messages: list[dict[str, str]]) -> int:
        p = make()
        procs.append(p)
        return model.chat(
            messages, GenerationParams(max_tokens=max_tokens, logits_processors=(p,))
        ).usage.completion_tokens

    cpu0, wall0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        tokens = list(pool.map(one, prompts))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    stats = [p.stats() for p in procs if isinstance(p, HardMaskProcessor | DecoGProcessor)]
    return {"cpu": cpu, "wall": wall, "tokens": tokens, "stats": stats}


def _given_hmms(hmms: Mapping[int, HMMSource] | Sequence[HMMSource] | None) -> dict[int, HMMSource]:
    """The distilled HMMs by hidden size (a list is loaded to read each one's size)."""
    if isinstance(hmms, Mapping):
        return dict(hmms)
    given: dict[int, HMMSource] = {}
    for item in hmms or ():
        hmm = item if isinstance(item, HMM) else HMM.load(item)
        given[hmm.hidden_size] = hmm
    return given


def _hmm_for(h: int, given: Mapping[int, HMMSource], vocab_size: int, eos: int, seed: int) -> tuple[HMM, bool]:
    if h in given:
        hmm = given[h] if isinstance(given[h], HMM) else HMM.load(given[h])  # type: ignore[arg-type]
        if hmm.hidden_size != h:
            raise InvalidRequestError(f"the HMM given for H={h} has {hmm.hidden_size} hidden states")
        return hmm, False
    return HMM.random(h, vocab_size, seed=seed, concentration=0.05, eos_token_id=eos), True


@dataclass
class _Variants:
    """What each variant runs: a maker of fresh processors and its token budget; which Deco-G ones use a random HMM."""

    make: dict[str, tuple[Callable[[], Any], int]] = field(default_factory=dict)
    random_hmm: dict[str, bool] = field(default_factory=dict)


def _variants(
    dfa: TokenDFA,
    vocab: TokenVocabulary,
    eos: int,
    given: Mapping[int, HMMSource],
    hidden_sizes: Sequence[int],
    n: int,
    *,
    prune_mass: float,
    candidate_gap: float | None,
    seed: int,
) -> _Variants:
    """The unconstrained baseline, the hard mask, and Deco-G with and without pruning at every hidden size."""
    # Special tokens have no bytes in the vocabulary: banning them all covers every end-of-generation token.
    eog = [i for i, b in enumerate(vocab.token_bytes) if b is None]
    out = _Variants()
    out.make["unconstrained"] = (lambda: NoEOSProcessor(eog, n), n)
    out.make["hard_mask"] = (lambda: HardMaskProcessor(dfa, n + 1, min_new_tokens=n), n + 1)
    for h in sorted({*hidden_sizes, *given}):
        hmm, is_random = _hmm_for(h, given, vocab.size, eos, seed)
        get_backward_tables(hmm, dfa, n)  # built once per (format, HMM) and cached: not part of the per-token cost
        for suffix, p in (("", None), ("_pruned", prune_mass)):
            name = f"decog_h{h}{suffix}"
            out.random_hmm[name] = is_random

            def make(hmm: HMM = hmm, p: float | None = p) -> DecoGProcessor:
                return DecoGProcessor(hmm, dfa, n + 1, min_new_tokens=n, prune_mass=p, candidate_gap=candidate_gap)

            out.make[name] = (make, n + 1)
    return out


def _timed_runs(
    model: LocalBackend, prompts: Sequence[list[dict[str, str]]], variants: _Variants, repeats: int, concurrency: int
) -> dict[str, list[dict[str, Any]]]:
    """Warm-up (first-call costs: plans, caches, the backend's buffers), then `repeats` interleaved rounds."""
    for make, budget in variants.make.values():
        _run(model, prompts[:1], make, budget, 1)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in variants.make}
    for _ in range(max(1, repeats)):
        for name, (make, budget) in variants.make.items():
            runs[name].append(_run(model, prompts, make, budget, concurrency))
    return runs


def bench_guidance(
    model: LocalBackend,
    hmms: Mapping[int, HMMSource] | Sequence[HMMSource] | None = None,
    *,
    hidden_sizes: Sequence[int] = (64, 128, 256),
    max_tokens: int = 64,
    prune_mass: float = 0.9,
    candidate_gap: float | None = DEFAULT_CANDIDATE_GAP,
    n_prompts: int = 4,
    concurrency: int = 1,
    repeats: int = 2,
    spec: str = DEFAULT_SPEC,
    tokenizer: Any = None,
    seed: int = 0,
) -> dict[str, float]:
    """Flat figures `{"<variant>.<figure>": value}`, e.g. `decog_h128_pruned.overhead` (see the module docstring).

    `model`: a `decoding.LocalBackend`. `hmms`: distilled HMMs (objects or folders), by hidden size or as a list; each
    is measured (its size is added to `hidden_sizes`), and the other sizes get random HMMs.
    `max_tokens`: N, the tokens every run generates. `concurrency`: requests in flight (1: single stream).
    `candidate_gap`: the service's default; None scores every token exactly (`config.candidate_gap` = 0).
    `tokenizer`: compile the format against its vocabulary instead of the backend's.
    """
    if max_tokens < 8:
        raise InvalidRequestError(f"max_tokens must be >= 8 to leave room for the format, got {max_tokens}")
    local = require_local(model, "the guidance benchmark")
    vocab = model_vocabulary(local, tokenizer)  # the backend's own: a GGUF model brings its tokenizer
    dfa = compile_token_dfa(spec, vocab)
    variants = _variants(dfa, vocab, model_eos_id(local, vocab), _given_hmms(hmms), hidden_sizes, max_tokens,
                         prune_mass=prune_mass, candidate_gap=candidate_gap, seed=seed)  # fmt: skip
    prompts = [math_messages(BENCH_PROBLEMS[i % len(BENCH_PROBLEMS)]) for i in range(n_prompts)]
    runs = _timed_runs(local, prompts, variants, repeats, concurrency)
    out: dict[str, float] = {"config.max_tokens": max_tokens, "config.n_prompts": n_prompts,
                             "config.concurrency": concurrency, "config.repeats": repeats,
                             "config.prune_mass": prune_mass, "config.candidate_gap": candidate_gap or 0.0,
                             "config.threads": torch.get_num_threads()}  # fmt: skip
    return out | _overheads(runs, variants, max_tokens)


def _overheads(runs: dict[str, list[dict[str, Any]]], variants: _Variants, n: int) -> dict[str, float]:
    """Per-token times of every variant and its overhead over the unconstrained baseline, with its processor's stats."""
    base = _per_token(runs["unconstrained"], n)
    out = {"unconstrained.ms_per_token": 1000 * base["cpu"], "unconstrained.wall_ms_per_token": 1000 * base["wall"]}
    for name in variants.make:
        if name == "unconstrained":
            continue
        pt = _per_token(runs[name], n)
        out[f"{name}.ms_per_token"] = 1000 * pt["cpu"]
        out[f"{name}.wall_ms_per_token"] = 1000 * pt["wall"]
        out[f"{name}.overhead"] = pt["cpu"] / base["cpu"] - 1
        out[f"{name}.overhead_wall"] = pt["wall"] / base["wall"] - 1
        stats = [s for r in runs[name] for s in r["stats"]]
        if stats:
            out[f"{name}.proc_ms_per_step"] = statistics.fmean(s["ms_per_step"] for s in stats)
        if stats and "kept_mass" in stats[0]:
            out[f"{name}.kept_states"] = statistics.fmean(s["kept_states"] for s in stats)
            out[f"{name}.kept_mass"] = statistics.fmean(s["kept_mass"] for s in stats)
        if name in variants.random_hmm:
            out[f"{name}.random_hmm"] = float(variants.random_hmm[name])
    return out


def _per_token(runs: list[dict[str, Any]], n: int) -> dict[str, float]:
    """Least CPU and wall seconds per generated token over the repeats; every run must have made exactly n tokens."""
    for r in runs:
        if any(t != n for t in r["tokens"]):
            raise RuntimeError(f"a run generated {r['tokens']} tokens instead of {n} each: lengths must match")
    total = sum(runs[0]["tokens"])
    return {"cpu": min(r["cpu"] for r in runs) / total, "wall": min(r["wall"] for r in runs) / total}
