"""The time-to-first-token prompt of `prunekit bench decode` has the length the bar names."""

from __future__ import annotations

from prunekit.eval.bench.decode import ttft_messages
from tests.eval.test_decoding import FakeLocalBackend

TEMPLATE_TOKENS = 7


class WordModel(FakeLocalBackend):
    """A fake local backend whose tokens are whitespace words, plus a fixed chat template."""

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return list(range(TEMPLATE_TOKENS + sum(len(m["content"].split()) for m in messages)))


class ServedModel:
    """A chat model that cannot encode: the prompt length is estimated."""


def test_prompt_has_the_requested_length_when_the_model_encodes():
    model = WordModel()
    for n in (50, 500, 1000):
        assert len(model.encode_chat(ttft_messages(model, n))) == n
    variants = [ttft_messages(model, 500, v)[0]["content"] for v in range(3)]
    assert len({v.split()[0] for v in variants}) == 3  # they differ from the first word on


def test_served_model_gets_an_estimate():
    content = ttft_messages(ServedModel(), 500)[0]["content"]
    assert 350 <= len(content.split()) <= 450


class CountingModel:
    """A fake chat model that answers `max_tokens` tokens at once and records the params it ran with."""

    name = "counting"

    def __init__(self) -> None:
        self.seen: list[object] = []

    def chat(self, messages, params=None):
        from prunekit.decoding.types import ChatResult, Usage

        self.seen.append(params)
        return ChatResult("x", "length", Usage(5, params.max_tokens), self.name)

    def stream(self, messages, params=None):
        from prunekit.decoding.types import ChatChunk

        yield ChatChunk(self.chat(messages, params).text, "length")


def test_the_loop_guard_is_measured_the_way_chat_runs_it():
    from prunekit.eval.bench.decode import bench_decode

    model = CountingModel()
    figures = bench_decode(model, max_tokens=8, requests=1, batch=2, rounds=2, repetition_penalty=1.1)
    for key in ("guard_single_tok_s", "guard_slowdown", "guard_batch2_tok_s", "guard_batch2_slowdown"):
        assert f"default.{key}" in figures
    guarded = [p for p in model.seen if p.repetition_penalty == 1.1]
    assert len(guarded) == 2 * 1 + 2 * 2  # single-stream rounds x requests + batch rounds x batch
    assert "default.guard_slowdown" not in bench_decode(CountingModel(), max_tokens=8, requests=1, batch=2)


def test_prefill_is_measured_alone_and_with_8_concurrent_prompts():
    from prunekit.eval.bench.decode import bench_decode

    model = CountingModel()
    figures = bench_decode(model, max_tokens=8, requests=1, batch=2, rounds=2)
    for key in ("prefill_1_tok_s", "prefill_8_tok_s", "ttft_8_p50_s", "ttft_8_p99_s"):
        assert figures[f"default.{key}"] > 0
    assert figures["default.ttft_8_p99_s"] >= figures["default.ttft_8_p50_s"]
    assert sum(p.max_tokens == 16 for p in model.seen) == 2 * (1 + 8)  # rounds x (one alone + eight at once)


def test_p99_of_few_samples_is_the_slowest_seen():
    from prunekit.eval.bench.decode import _percentile

    assert _percentile([3.0, 1.0, 2.0, 8.0, 5.0, 4.0, 7.0, 6.0], 99) == 8.0
    assert _percentile([3.0, 1.0, 2.0, 8.0, 5.0, 4.0, 7.0, 6.0], 50) == 4.0
