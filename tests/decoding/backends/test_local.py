"""The transformers backend on the real embedded model (offline)."""

import threading

import pytest
import torch

from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.types import GenerationParams

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


class BanToken:
    """A logits processor that forbids one token id."""

    def __init__(self, token_id: int) -> None:
        self.token_id = token_id
        self.calls = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        scores = scores.clone()
        scores[:, self.token_id] = float("-inf")
        return scores


def test_embedded_model_answers_offline(hf_model):
    result = hf_model.chat(FRANCE, GenerationParams(max_tokens=32))
    assert "Paris" in result.text
    assert result.finish_reason == "stop"
    assert result.usage.prompt_tokens == len(hf_model.encode_chat(FRANCE))
    assert 0 < result.usage.completion_tokens <= 32


def test_stream_equals_chat(hf_model):
    params = GenerationParams(max_tokens=24)
    chunks = list(hf_model.stream(FRANCE, params))
    assert chunks[-1].finish_reason is not None and chunks[-1].usage is not None
    assert "".join(c.text for c in chunks) == hf_model.chat(FRANCE, params).text


def test_max_tokens_and_stop(hf_model):
    capped = hf_model.chat(FRANCE, GenerationParams(max_tokens=3))
    assert capped.finish_reason == "length" and capped.usage.completion_tokens == 3
    stopped = hf_model.chat(FRANCE, GenerationParams(max_tokens=32, stop=("Paris",)))
    assert "Paris" not in stopped.text and stopped.finish_reason == "stop"


def test_logits_processors_run_every_step(hf_model):
    first = hf_model.encode_chat(FRANCE)
    greedy_first = int(hf_model.next_token_logprobs(first).argmax())
    ban = BanToken(greedy_first)
    result = hf_model.chat(FRANCE, GenerationParams(max_tokens=5, logits_processors=(ban,)))
    assert ban.calls == result.usage.completion_tokens
    assert not result.text.startswith(hf_model.tokenizer.decode([greedy_first]))


def test_sequence_logprobs_match_next_token_logprobs(hf_model):
    prompt = hf_model.encode_chat(FRANCE)
    completion = hf_model.tokenizer.encode("The capital", add_special_tokens=False)
    scores = hf_model.sequence_logprobs(prompt, completion)
    assert scores[0] == pytest.approx(float(hf_model.next_token_logprobs(prompt)[completion[0]]), abs=1e-4)
    assert all(s < 0 for s in scores)


def test_seeded_sampling_is_repeatable(hf_model):
    params = GenerationParams(max_tokens=12, temperature=1.0, seed=123)
    assert hf_model.chat(FRANCE, params).text == hf_model.chat(FRANCE, params).text


def test_prompt_longer_than_the_context_is_refused(hf_model):
    with pytest.raises(InvalidRequestError, match="exceeds the model's context"):
        hf_model.chat(FRANCE, GenerationParams(max_tokens=hf_model.context_length))


def test_concurrent_requests_are_safe(hf_model):
    params = GenerationParams(max_tokens=8)
    expected = hf_model.chat(FRANCE, params).text
    results: list[str] = []

    def ask() -> None:
        results.append(hf_model.chat(FRANCE, params).text)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 3


def test_generate_batch_matches_the_token_loop(hf_model):
    params = GenerationParams(max_tokens=10)
    questions = [FRANCE, [{"role": "user", "content": "Name three colors."}]]
    batched = hf_model.generate_batch(questions, params)
    assert [r.text for r in batched] == [hf_model.chat(q, params).text for q in questions]


def test_generate_batch_refuses_what_it_cannot_apply(hf_model):
    with pytest.raises(InvalidRequestError, match="formats"):
        hf_model.generate_batch([FRANCE], GenerationParams(format='json:{"answer": "string"}'))
    with pytest.raises(InvalidRequestError, match="one sequence"):
        hf_model.generate_batch([FRANCE, FRANCE], GenerationParams(logits_processors=(lambda ids, s: s,)))
    with pytest.raises(InvalidRequestError, match="penalties"):
        hf_model.generate_batch([FRANCE], GenerationParams(presence_penalty=0.5))
    with pytest.raises(InvalidRequestError, match="context"):
        hf_model.generate_batch([[{"role": "user", "content": "word " * 9000}]], GenerationParams(max_tokens=8))
