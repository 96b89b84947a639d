"""Per-step cost of Deco-G guidance over a real vocabulary: `python -m prunekit.eval.bench.decog_step [--json]`.

Deco-G (arXiv 2510.03595) prunes HMM states because the lookahead costs about O(H * V) per step (Ctrl-G:
O(S * H * V)). This measures the processors alone: a formatted output (free reasoning, the pivot, the number,
EOS) is teacher-forced through a fresh processor, with the embedded SmolLM2's real logits at each position when
`--llm` (else random logits), and each processor call is timed (the hard mask, outlines-core's mask of the same
format as a reference, and Deco-G per hidden size and pruning setting): wall clock and this thread's CPU time (the
honest figure on a shared machine, where the wall clock also counts time spent waiting for a core).
The HMM is random with peaky Dirichlet rows (`concentration`), a stand-in for a distilled one: how many states
pruning keeps depends on the real HMM, so `kept_states` / `kept_mass` come with the times.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from typing import Any

import torch

from prunekit.decoding.decog.backward import clear_backward_cache, get_backward_tables
from prunekit.decoding.decog.guidance import DecoGProcessor, HardMaskProcessor
from prunekit.decoding.decog.hmm import HMM
from prunekit.decoding.decog.outlines_ref import OutlinesMaskProcessor
from prunekit.decoding.decog.token_dfa import compile_token_dfa
from prunekit.decoding.decog.vocab import TokenVocabulary

__all__ = ["DEFAULT_OUTPUT", "DEFAULT_PROMPT", "DEFAULT_SPEC", "llm_logits", "run_benchmark"]

log = logging.getLogger(__name__)

DEFAULT_SPEC = "pivot:<free>The answer is <int>"
DEFAULT_PROMPT = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?"
)
DEFAULT_OUTPUT = (
    "Natalia sold 48 clips in April. In May she sold half as many, which is 48 / 2 = 24 clips. "
    "Altogether she sold 48 + 24 = 72 clips in April and May. The answer is 72"
)
Settings = tuple[tuple[float | None, float | None], ...]  # (prune_mass, candidate_gap) pairs


def llm_logits(prompt_ids: list[int], forced: list[int]) -> list[torch.Tensor]:
    """The embedded model's logits (1, V) before each forced token, by one teacher-forced forward pass."""
    from transformers import AutoModelForCausalLM

    from prunekit.decoding.backends.embedded import embedded_hf_dir

    model = AutoModelForCausalLM.from_pretrained(embedded_hf_dir(), dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + forced])).logits[0]  # (T, V)
    start = len(prompt_ids) - 1  # logits at position i predict token i + 1
    return [logits[start + i][None].clone() for i in range(len(forced))]


def _time_processor(make: Any, forced: list[int], logits: list[torch.Tensor]) -> dict[str, float]:
    """Teacher-force `forced` (EOS last) through a fresh processor from `make()`; time only its calls."""
    proc = make()
    prompt = [1, 2, 3]
    wall: list[float] = []
    cpu: list[float] = []
    for i, token in enumerate(forced):
        ids = torch.tensor([prompt + forced[:i]])
        scores = logits[i].clone()
        t0, c0 = time.perf_counter(), time.thread_time()
        out = proc(ids, scores)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
        if not torch.isfinite(out[0, token]):
            raise RuntimeError(f"the processor forbids token {token} of a valid output at step {i}")
    wall_ms = sorted(1000 * t for t in wall[1:])  # the first call builds the start state's plan (cached later)
    cpu_ms = sorted(1000 * t for t in cpu[1:])
    res = {
        "steps": len(wall),
        "ms_mean": statistics.fmean(wall_ms),
        "ms_p50": wall_ms[len(wall_ms) // 2],
        "ms_p90": wall_ms[int(0.9 * (len(wall_ms) - 1))],
        "cpu_ms_mean": statistics.fmean(cpu_ms),
        "cpu_ms_p50": cpu_ms[len(cpu_ms) // 2],
    }
    stats = proc.stats()
    if "kept_states" in stats:
        res.update({k: stats[k] for k in ("kept_states", "kept_mass", "exact_tokens")})
    return res


def run_benchmark(
    vocab: TokenVocabulary,
    forced_ids: list[int],
    logits: list[torch.Tensor] | None = None,
    *,
    spec: str = DEFAULT_SPEC,
    hidden_sizes: tuple[int, ...] = (64, 128, 256),
    settings: Settings = ((None, None), (0.9, None), (0.9, 15.0)),
    max_new_tokens: int = 256,
    concentration: float = 0.05,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (method, H, prune_mass, candidate_gap): per-step processor time, Deco-G pruning statistics.

    `forced_ids`: token ids of an output in the format, EOS last; `logits`: the LLM's (1, V) scores before each
    (default: random, which makes `candidate_gap` useless: real logits are far peakier).
    """
    if len(forced_ids) < 3:  # the first step is set aside (it builds the start state's plan): time at least two
        raise ValueError(f"the output to teacher-force needs at least 3 tokens (EOS included), got {len(forced_ids)}")
    if logits is None:
        g = torch.Generator().manual_seed(seed)
        logits = [2.0 * torch.randn(1, vocab.size, generator=g) for _ in forced_ids]
    t0 = time.perf_counter()
    dfa = compile_token_dfa(spec, vocab)
    dfa_s = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    hard = _time_processor(lambda: HardMaskProcessor(dfa, max_new_tokens), forced_ids, logits)
    rows.append({"method": "hard_mask", "hidden_size": 0, "prune_mass": None, "candidate_gap": None, **hard})
    reference = _time_processor(lambda: OutlinesMaskProcessor(spec, vocab), forced_ids, logits)
    rows.append({"method": "outlines", "hidden_size": 0, "prune_mass": None, "candidate_gap": None, **reference})
    for h in hidden_sizes:
        hmm = HMM.random(h, vocab.size, seed=seed, concentration=concentration, eos_token_id=vocab.eos_token_ids[0])
        clear_backward_cache()
        t0 = time.perf_counter()
        tables = get_backward_tables(hmm, dfa, max_new_tokens - 1)
        tables_s = time.perf_counter() - t0
        for p, gap in settings:

            def make(hmm: HMM = hmm, p: float | None = p, gap: float | None = gap, t: Any = tables) -> DecoGProcessor:
                return DecoGProcessor(hmm, dfa, max_new_tokens, prune_mass=p, candidate_gap=gap, tables=t)

            res = _time_processor(make, forced_ids, logits)
            row = {"method": "decog", "hidden_size": h, "prune_mass": p, "candidate_gap": gap, "tables_s": tables_s}
            rows.append({**row, **res})
    for r in rows:
        r.update(
            {"format": spec, "dfa_states": dfa.num_states, "dfa_build_s": dfa_s, "threads": torch.get_num_threads()}
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--llm", action="store_true", help="use the embedded model's real logits")
    parser.add_argument("--spec", default=DEFAULT_SPEC)
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="a formatted output to teacher-force")
    parser.add_argument("--hidden", default="64,128,256")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    from prunekit.decoding.backends.embedded import embedded_hf_dir

    tokenizer = AutoTokenizer.from_pretrained(embedded_hf_dir())
    vocab = TokenVocabulary.from_tokenizer(tokenizer)
    forced = [*tokenizer.encode(args.output, add_special_tokens=False), vocab.eos_token_ids[0]]
    if len(forced) < 3:
        parser.error("--output must be at least two tokens long")
    logits = None
    if args.llm:
        chat = [{"role": "user", "content": DEFAULT_PROMPT}]
        text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer.encode(text, add_special_tokens=False)
        logits = llm_logits(prompt_ids, forced)
    hidden = tuple(int(x) for x in args.hidden.split(","))
    rows = run_benchmark(vocab, forced, logits, spec=args.spec, hidden_sizes=hidden)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    r0 = rows[0]
    print(f"format {args.spec!r}: {r0['dfa_states']} DFA states, built in {r0['dfa_build_s']:.2f} s")
    print(f"{r0['steps']} teacher-forced steps, {'LLM' if args.llm else 'random'} logits, {r0['threads']} threads")
    head = f"{'method':<10}{'H':>5}{'prune':>7}{'gap':>6}{'ms/step':>9}{'p50':>7}{'p90':>7}{'cpu ms':>8}"
    print(head + f"{'kept':>7}{'mass':>7}{'exact':>8}{'tables s':>10}")
    nan = float("nan")
    for r in rows:
        print(
            f"{r['method']:<10}{r['hidden_size']:>5}{r['prune_mass'] or '-':>7}{r['candidate_gap'] or '-':>6}"
            f"{r['ms_mean']:>9.3f}{r['ms_p50']:>7.3f}{r['ms_p90']:>7.3f}{r['cpu_ms_mean']:>8.3f}"
            f"{r.get('kept_states', nan):>7.1f}{r.get('kept_mass', nan):>7.3f}{r.get('exact_tokens', nan):>8.0f}"
            f"{r.get('tables_s', nan):>10.3f}"
        )


if __name__ == "__main__":
    main()
