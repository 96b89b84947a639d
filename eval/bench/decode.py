"""`prunekit bench decode`: tokens/s of the embedded model's backends, measured side by side.

Figures (flat keys `<backend>.<figure>`):
- `<default>.single_tok_s`: one request at a time; `<default>.batch8_tok_s`: 8 concurrent requests (each the
  best of `rounds` rounds);
- `<default>.hook_single_tok_s`: single stream with a no-op logits processor (the per-step hook that
  Deco-G uses), and `hook_slowdown` = 1 - hook / plain;
- with `repetition_penalty` (what `prunekit chat` and the service run with, their loop guard):
  `<default>.guard_single_tok_s` / `<default>.guard_batch8_tok_s`, and `guard_slowdown` / `guard_batch8_slowdown`
  = 1 - guarded / plain.
The single-stream methods take turns request by request, and batch rounds alternate; a slowdown is the median over
rounds of that round's ratio, so machine noise lands on both sides of each comparison.
- `<default>.ttft_500_s`: time to first token for a 500-token chat prompt (median of 3 prompts that differ from
  their first word on, so a prompt cache can only hold the chat template's fixed header), with
  `<default>.ttft_prompt_tokens` (that length as the model counts it) and, for a backend that caches prompts,
  `<default>.ttft_reused_tokens` (prompt tokens per trial taken from the cache rather than prefilled);
- prefill under load, with 1,200-token chat prompts that differ from their first word on (so a prompt cache holds
  only the chat template's header): `<default>.prefill_1_tok_s`, prompt tokens / time to first token of one prompt
  alone; `<default>.prefill_8_tok_s`, the 8 prompts' tokens / time until the last of 8 concurrent ones has its first
  token, each decoding 16 tokens once started (a running stream must not stop prefill, nor prefill stop it); each
  the best of `rounds` rounds, single and concurrent taking turns; `<default>.ttft_8_p50_s` /
  `<default>.ttft_8_p99_s`: time to first token of those concurrent requests, over all rounds' requests;
- `hf_generate.single_tok_s` / `hf_generate.batch8_tok_s`: plain transformers `generate`;
- `<default>.speedup_single` over `hf_generate`; `<default>.greedy_agreement` with transformers;
- `<default>.rss_mb`: resident memory of this process with only the default backend loaded and
  warm (what the service holds); `process.rss_mb`: at the end, with transformers loaded too.
"""

from __future__ import annotations

import bisect
import math
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from prunekit.decoding import ChatModel, GenerationParams, as_local

__all__ = ["NoOpProcessor", "bench_decode", "rss_mb"]

STORY = "Write a long story about {subject}. Make it detailed."
SUBJECTS = [
    "a cat",
    "a lighthouse keeper",
    "a city on Mars",
    "an old clock",
    "a river",
    "a chess player",
    "a baker",
    "a storm",
]
AGREEMENT_QUESTIONS = [
    "What is the capital of France?",
    "What is 2+2?",
    "Name three colors.",
    "Who wrote Hamlet?",
    "What is the boiling point of water?",
    "Give me a synonym for happy.",
    "How many legs does a spider have?",
    "What is photosynthesis?",
]


class NoOpProcessor:
    """A logits processor that changes nothing: measures the cost of the per-step hook itself."""

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return scores


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _story(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": STORY.format(subject=SUBJECTS[i % len(SUBJECTS)])}]


def _tokens_per_s(run: Callable[[], int]) -> float:
    started = time.perf_counter()
    tokens = run()
    return tokens / (time.perf_counter() - started)


def _interleaved(model: ChatModel, methods: dict[str, GenerationParams], requests: int) -> dict[str, float]:
    """Tokens/s of each method over the same `requests` prompts, run request by request in turn (A B C, A B C, ...),
    so a neighbour's burst on a shared machine lands on every method alike rather than on one round of one."""
    tokens = dict.fromkeys(methods, 0)
    seconds = dict.fromkeys(methods, 0.0)
    for i in range(requests):
        for name, params in methods.items():
            started = time.perf_counter()
            tokens[name] += model.chat(_story(i), params).usage.completion_tokens
            seconds[name] += time.perf_counter() - started
    return {name: tokens[name] / seconds[name] for name in methods}


def _concurrent(model: ChatModel, params: GenerationParams, n: int) -> float:
    counts = [0] * n

    def one(i: int) -> None:
        counts[i] = model.chat(_story(i), params).usage.completion_tokens

    def run() -> int:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts)

    return _tokens_per_s(run)


def ttft_messages(model: ChatModel, prompt_tokens: int = 500, variant: int = 0) -> list[dict[str, str]]:
    """A user message whose chat prompt is `prompt_tokens` long, or a token short where the next word takes two,
    when `model` can encode a chat (a local backend; a served model cannot: ~0.8 words a token). Messages of
    different `variant`s differ from their first word on."""
    notes = (f"Note {i}: the weather was mild and the market was busy." for i in range(prompt_tokens))
    words = [f"Log{variant}:", *" ".join(notes).split()]

    def messages(n: int) -> list[dict[str, str]]:
        return [{"role": "user", "content": " ".join(words[:n]) + "\nSummarise the notes."}]

    local = as_local(model)
    if local is None:
        return messages(prompt_tokens * 4 // 5)
    # the prompt grows with the number of words: the last count that still fits
    fits = bisect.bisect_right(
        range(1, len(words) + 1), prompt_tokens, key=lambda n: len(local.encode_chat(messages(n)))
    )
    return messages(max(1, fits))


def _ttft(model: ChatModel, prompts: list[list[dict[str, str]]]) -> float:
    """Median seconds from request to the first text, one trial per prompt (one trial is noise)."""
    times = []
    for messages in prompts:
        started = time.perf_counter()
        for chunk in model.stream(messages, GenerationParams(max_tokens=8)):
            if chunk.text:
                break
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_decode(
    model: ChatModel,
    load_hf: Callable[[], Any] | None = None,
    *,
    max_tokens: int = 128,
    requests: int = 3,
    batch: int = 8,
    rounds: int = 2,
    repetition_penalty: float | None = None,
) -> dict[str, float]:
    """Measure `model` (the default embedded backend), then, if `load_hf` is given, the transformers path.

    `repetition_penalty`: also measure decoding with chat's loop guard (the CLI passes its default), which runs
    at every token (`decoding.backends.penalties`)."""
    name = "llamacpp" if type(model).__name__ == "LlamaCppModel" else "default"
    model.chat(_story(0), GenerationParams(max_tokens=8))  # warm-up: first-call allocations
    figures = _speeds(model, name, max_tokens, requests, batch, rounds, repetition_penalty)
    figures |= _ttft_figures(model, name)
    figures |= _prefill_figures(model, name, rounds)
    figures[f"{name}.rss_mb"] = rss_mb()
    if load_hf is not None:
        params = GenerationParams(max_tokens=max_tokens)
        figures |= _hf_figures(model, load_hf(), name, params, requests, batch, figures[f"{name}.single_tok_s"])
    figures["process.rss_mb"] = rss_mb()
    return figures


def _speeds(
    model: ChatModel,
    name: str,
    max_tokens: int,
    requests: int,
    batch: int,
    rounds: int,
    repetition_penalty: float | None,
) -> dict[str, float]:
    """Tokens/s plain, hooked (a no-op logits processor) and guarded (the loop guard), single stream and batched."""
    params = GenerationParams(max_tokens=max_tokens)
    guarded = None
    if repetition_penalty is not None:
        guarded = GenerationParams(max_tokens=max_tokens, repetition_penalty=repetition_penalty)
    hooked = GenerationParams(max_tokens=max_tokens, logits_processors=(NoOpProcessor(),))
    # Plain and hooked runs alternate and each keeps its best round: on a shared machine a neighbour's burst
    # would otherwise land on one side of the comparison only.
    methods = {"plain": params, "hooked": hooked} | ({"guarded": guarded} if guarded is not None else {})
    runs = [_interleaved(model, methods, requests) for _ in range(rounds)]
    figures: dict[str, float] = {}
    figures[f"{name}.single_tok_s"] = max(run["plain"] for run in runs)
    figures[f"{name}.hook_single_tok_s"] = max(run["hooked"] for run in runs)
    figures[f"{name}.hook_slowdown"] = 1 - statistics.median(run["hooked"] / run["plain"] for run in runs)
    plain_batches, guarded_batches = [], []
    for _ in range(rounds):
        plain_batches.append(_concurrent(model, params, batch))
        if guarded is not None:
            guarded_batches.append(_concurrent(model, guarded, batch))
    figures[f"{name}.batch{batch}_tok_s"] = max(plain_batches)
    if guarded is not None:
        figures[f"{name}.guard_single_tok_s"] = max(run["guarded"] for run in runs)
        figures[f"{name}.guard_slowdown"] = 1 - statistics.median(run["guarded"] / run["plain"] for run in runs)
        figures[f"{name}.guard_batch{batch}_tok_s"] = max(guarded_batches)
        figures[f"{name}.guard_batch{batch}_slowdown"] = 1 - statistics.median(
            guarded / plain for guarded, plain in zip(guarded_batches, plain_batches, strict=True)
        )
    return figures


def _ttft_figures(model: ChatModel, name: str) -> dict[str, float]:
    """Time to first token for a 500-token prompt; for a local backend, that length as it counts it and the prompt
    tokens its prompt cache served (when it has one)."""
    ttft_prompts = [ttft_messages(model, 500, variant) for variant in range(3)]
    local = as_local(model)
    reused_before = local.reused_prompt_tokens if local is not None else None
    figures = {f"{name}.ttft_500_s": _ttft(model, ttft_prompts)}
    if local is not None:
        figures[f"{name}.ttft_prompt_tokens"] = statistics.median(len(local.encode_chat(p)) for p in ttft_prompts)
    if local is not None and reused_before is not None:
        reused = (local.reused_prompt_tokens or 0) - reused_before
        figures[f"{name}.ttft_reused_tokens"] = reused / len(ttft_prompts)
    return figures


def _first_token_s(model: ChatModel, messages: list[dict[str, str]], max_tokens: int) -> float:
    """Seconds from the request to its first chunk (text or, for a first token with no text yet, the end); the
    stream is then read to its end, so the request keeps decoding as a client would make it."""
    started = time.perf_counter()
    first = None
    for _ in model.stream(messages, GenerationParams(max_tokens=max_tokens)):
        if first is None:
            first = time.perf_counter() - started
    return first if first is not None else time.perf_counter() - started


def _concurrent_first_tokens(model: ChatModel, prompts: list[list[dict[str, str]]], max_tokens: int) -> list[float]:
    """Time to first token of each of `prompts`, all sent at once; the last is the concurrent prefill's time."""
    times = [0.0] * len(prompts)

    def one(i: int) -> None:
        times[i] = _first_token_s(model, prompts[i], max_tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def _prompt_tokens(model: ChatModel, messages: list[dict[str, str]], estimate: int) -> int:
    local = as_local(model)
    return len(local.encode_chat(messages)) if local is not None else estimate


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: with few samples p99 is the slowest, never an interpolation beyond what was seen."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _prefill_figures(
    model: ChatModel, name: str, rounds: int, prompt_tokens: int = 1200, concurrent: int = 8, max_tokens: int = 16
) -> dict[str, float]:
    """Prompt tokens/s of one long prompt alone and of `concurrent` at once, and the concurrent ones' time to
    first token (module doc). Every prompt is a new variant, so none is served from the prompt cache."""
    variants = iter(range(100, 100 + rounds * (concurrent + 1)))
    single, batched, ttfts = [], [], []
    for _ in range(rounds):
        alone = ttft_messages(model, prompt_tokens, next(variants))
        single.append(_prompt_tokens(model, alone, prompt_tokens) / _first_token_s(model, alone, max_tokens))
        prompts = [ttft_messages(model, prompt_tokens, next(variants)) for _ in range(concurrent)]
        times = _concurrent_first_tokens(model, prompts, max_tokens)
        batched.append(sum(_prompt_tokens(model, p, prompt_tokens) for p in prompts) / max(times))
        ttfts += times
    return {
        f"{name}.prefill_1_tok_s": max(single),
        f"{name}.prefill_{concurrent}_tok_s": max(batched),
        f"{name}.ttft_{concurrent}_p50_s": statistics.median(ttfts),
        f"{name}.ttft_{concurrent}_p99_s": _percentile(ttfts, 99),
    }


def _hf_figures(
    model: ChatModel,
    hf_model: Any,
    name: str,
    params: GenerationParams,
    requests: int,
    batch: int,
    single_tok_s: float,
) -> dict[str, float]:
    """Plain transformers `generate` single stream and batched, `model`'s speedup over it (`single_tok_s`: its
    single-stream speed), and how often greedy answers agree."""
    figures = {
        "hf_generate.single_tok_s": _tokens_per_s(
            lambda: sum(
                hf_model.generate_batch([_story(i)], params)[0].usage.completion_tokens for i in range(requests)
            )
        ),
        f"hf_generate.batch{batch}_tok_s": _tokens_per_s(
            lambda: sum(
                r.usage.completion_tokens for r in hf_model.generate_batch([_story(i) for i in range(batch)], params)
            )
        ),
    }
    figures[f"{name}.speedup_single"] = single_tok_s / figures["hf_generate.single_tok_s"]
    short = GenerationParams(max_tokens=32)
    same = [
        model.chat([{"role": "user", "content": q}], short).text
        == hf_model.chat([{"role": "user", "content": q}], short).text
        for q in AGREEMENT_QUESTIONS
    ]
    figures[f"{name}.greedy_agreement"] = sum(same) / len(same)
    return figures
