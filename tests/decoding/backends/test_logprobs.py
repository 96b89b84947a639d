"""OpenAI's `logprobs` on both local backends (llama.cpp, transformers), on the real embedded model."""

import json
import math
import threading

import pytest
import torch

from prunekit.decoding.types import GenerationParams, TokenLogprob
from tests.conftest import require_llamacpp

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
COLORS = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture(params=["llamacpp", "transformers"])
def model(request):
    return request.getfixturevalue("embedded_model" if request.param == "llamacpp" else "hf_model")


class ForceTokens:
    """A logits processor that leaves only `tokens[i]` open at step i (then lets the model go on)."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens
        self.step = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.step < len(self.tokens):
            forced = torch.full_like(scores, float("-inf"))
            forced[:, self.tokens[self.step]] = scores[:, self.tokens[self.step]]
            scores = forced
        self.step += 1
        return scores


def joined_bytes(items) -> bytes:
    return b"".join(bytes(item.bytes) for item in items)


def test_greedy_logprobs_cover_every_token_with_the_best_first(model):
    result = model.chat(FRANCE, GenerationParams(max_tokens=24, logprobs=True, top_logprobs=5))
    entries = result.logprobs
    assert len(entries) == result.usage.completion_tokens > 0  # no stop sequence: one entry per completion token
    assert joined_bytes(entries).decode() == result.text  # in order, each token once
    for entry in entries:
        assert isinstance(entry, TokenLogprob) and entry.logprob <= 0.0
        assert 1 <= len(entry.top) <= 5
        logps = [lp for _, lp, _ in entry.top]
        assert logps == sorted(logps, reverse=True) and sum(math.exp(lp) for lp in logps) <= 1.0 + 1e-5
        assert entry.logprob == pytest.approx(logps[0], abs=1e-6)  # greedy takes the best token
        assert entry.token == entry.top[0][0] or entry.logprob == pytest.approx(entry.top[1][1], abs=1e-6)


def test_the_first_logprob_is_the_models_own(model):
    """Greedy, no penalty, no processor: the processed distribution is the model's, `next_token_logprobs`."""
    result = model.chat(FRANCE, GenerationParams(max_tokens=1, logprobs=True, top_logprobs=3))
    model_logprobs = model.next_token_logprobs(model.encode_chat(FRANCE))  # (V,)
    best = torch.topk(model_logprobs, 3)
    assert result.logprobs[0].logprob == pytest.approx(float(best.values[0]), abs=2e-3)
    assert [lp for _, lp, _ in result.logprobs[0].top] == pytest.approx(best.values.tolist(), abs=2e-3)


def test_streaming_carries_each_tokens_entry_with_its_text(model):
    params = GenerationParams(max_tokens=24, logprobs=True, top_logprobs=2)
    chunks = list(model.stream(COLORS, params))
    assert all(chunk.logprobs is not None for chunk in chunks)
    shown, released = "", []
    for chunk in chunks:  # no stop sequence holds text back: each chunk's entries spell exactly its text
        shown += chunk.text
        released += chunk.logprobs
        assert joined_bytes(released).decode(errors="replace") == shown
    whole = model.chat(COLORS, params)
    assert tuple(released) == whole.logprobs and shown == whole.text
    assert len(released) == chunks[-1].usage.completion_tokens


def test_without_logprobs_nothing_is_reported(model):
    chunks = list(model.stream(FRANCE, GenerationParams(max_tokens=6)))
    assert all(chunk.logprobs is None for chunk in chunks)
    assert model.chat(FRANCE, GenerationParams(max_tokens=6)).logprobs is None


def test_a_stop_sequence_keeps_the_tokens_before_it_and_drops_its_own(model):
    params = GenerationParams(max_tokens=24, logprobs=True)
    free = model.chat(FRANCE, params)
    # where each token's text starts (a token that ends inside a character adds none)
    starts = [len(joined_bytes(free.logprobs[:k]).decode(errors="ignore")) for k in range(len(free.logprobs) + 1)]
    # a stop sequence that begins inside a token of two characters or more: that token shows in part
    k = next(
        k
        for k in range(1, len(free.logprobs))
        if starts[k + 1] - starts[k] >= 2 and free.text.find(free.text[starts[k] + 1 :][:4]) == starts[k] + 1
    )
    cut = starts[k] + 1
    stopped = model.chat(FRANCE, GenerationParams(max_tokens=24, logprobs=True, stop=(free.text[cut:][:4],)))
    assert stopped.text == free.text[:cut] and stopped.finish_reason == "stop"
    assert stopped.logprobs == free.logprobs[: k + 1]  # the token cut by the stop is reported, the rest are not
    assert stopped.usage.completion_tokens >= len(stopped.logprobs)
    chunks = list(model.stream(FRANCE, GenerationParams(max_tokens=24, logprobs=True, stop=(free.text[cut:][:4],))))
    assert tuple(e for c in chunks for e in c.logprobs) == stopped.logprobs


def test_a_character_split_across_tokens_gets_one_entry_per_token(model):
    """A processor forces "é" as two byte tokens: the chunk that shows it carries both, each with its byte, and the
    processed distribution (one token left open) gives each probability 1."""
    token_bytes = model.vocabulary().token_bytes
    halves = [token_bytes.index(b"\xc3"), token_bytes.index(b"\xa9")]
    params = GenerationParams(max_tokens=4, logprobs=True, top_logprobs=3, logits_processors=(ForceTokens(halves),))
    chunks = list(model.stream(FRANCE, params))
    first = next(c for c in chunks if c.text)
    assert first.text.startswith("é") and [e.bytes for e in first.logprobs[:2]] == [(0xC3,), (0xA9,)]
    assert [(e.logprob, len(e.top)) for e in first.logprobs[:2]] == [(0.0, 1), (0.0, 1)]
    assert sum(len(c.logprobs) for c in chunks) == chunks[-1].usage.completion_tokens

    cut_short = GenerationParams(max_tokens=1, logprobs=True, logits_processors=(ForceTokens(halves),))
    result = model.chat(FRANCE, cut_short)  # max_tokens ends inside the character
    assert result.text == "\ufffd" and [e.bytes for e in result.logprobs] == [(0xC3,)]


def test_sampled_logprobs_are_of_the_sampled_distribution(model):
    params = GenerationParams(max_tokens=16, temperature=0.8, top_p=0.9, seed=7, logprobs=True, top_logprobs=20)
    result = model.chat(FRANCE, params)
    # asking for logprobs changes nothing of what is sampled
    assert model.chat(FRANCE, GenerationParams(max_tokens=16, temperature=0.8, top_p=0.9, seed=7)).text == result.text
    assert len(result.logprobs) == result.usage.completion_tokens
    for entry in result.logprobs:
        probs = [math.exp(lp) for _, lp, _ in entry.top]
        assert math.isfinite(entry.logprob) and entry.logprob <= 0.0
        # top-p's nucleus is renormalised: the alternatives listed are all of it when it has at most 20 tokens
        assert sum(probs) <= 1.0 + 1e-5 and (len(probs) == 20 or sum(probs) == pytest.approx(1.0, abs=1e-4))
        assert entry.token in [t for t, _, _ in entry.top] or len(probs) == 20


@pytest.fixture(scope="module")
def fidelity_model():
    """f16 weights: batched and single-stream steps give the same numbers (as in test_llamacpp)."""
    model = require_llamacpp().LlamaCppModel.embedded(quant="f16", slots=4, slot_context=1024)
    yield model
    model.close()


def test_batched_requests_report_the_sequential_logprobs(fidelity_model):
    embedded_model = fidelity_model
    questions = [FRANCE, COLORS, [{"role": "user", "content": "What is 2+2?"}]]
    params = GenerationParams(max_tokens=16, logprobs=True, top_logprobs=2)
    alone = [embedded_model.chat(q, params).logprobs for q in questions]
    together: list = [None] * len(questions)

    def ask(i: int) -> None:
        together[i] = embedded_model.chat(questions[i], params).logprobs

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for a, b in zip(alone, together, strict=True):
        assert [e.token for e in a] == [e.token for e in b]
        # batched matmuls sum in another order: the same tokens, log-probs within a hundredth
        assert [e.logprob for e in a] == pytest.approx([e.logprob for e in b], abs=1e-2)


def test_a_format_masks_the_reported_distribution(embedded_model):
    """Under a format's hard mask, the reported distribution is the masked one: at the first step only the tokens
    that can open the JSON object are listed, and they hold all the probability."""
    params = GenerationParams(
        max_tokens=30, logprobs=True, top_logprobs=20, format='json:{"answer": "string"}', format_method="hard_mask"
    )
    result = embedded_model.chat(
        [{"role": "user", "content": "What is the capital of France? Answer in JSON."}], params
    )
    assert json.loads(result.text).keys() == {"answer"}
    first = result.logprobs[0]
    assert all(token.startswith("{") for token, _, _ in first.top) and len(first.top) < 20
    assert sum(math.exp(lp) for _, lp, _ in first.top) == pytest.approx(1.0, abs=1e-4)
    assert joined_bytes(result.logprobs).decode() == result.text
