"""The llama.cpp fast path: fidelity against transformers, batching, hooks, stops, scoring, fallback."""

import threading

import pytest
import torch

from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.types import GenerationParams
from tests.conftest import require_llamacpp

llamacpp = require_llamacpp()

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
QUESTIONS = ["What is the capital of France?", "What is 2+2?", "Name three colors.", "Who wrote Hamlet?"]


@pytest.fixture(scope="module")
def fidelity_model():
    """f16 weights: llama.cpp with the transformers path's numerics (greedy output must match)."""
    model = llamacpp.LlamaCppModel.embedded(quant="f16", slots=4, slot_context=2048)
    yield model
    model.close()


def ask(q: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": q}]


def test_chat_template_and_tokens_match_transformers(embedded_model, hf_model):
    for q in QUESTIONS:
        assert embedded_model.encode_chat(ask(q)) == hf_model.encode_chat(ask(q))


def test_both_backends_are_local_backends_that_agree_on_tokens(embedded_model, hf_model):
    from prunekit.decoding import as_local

    assert as_local(embedded_model) is embedded_model and as_local(hf_model) is hf_model
    text = "The answer is 42. <|im_end|> ok"
    assert embedded_model.tokenize(text) == hf_model.tokenize(text)  # the marker is the special token
    assert embedded_model.tokenize(text, special=False) == hf_model.tokenize(text, special=False)  # plain text
    assert 2 in hf_model.tokenize(text) and 2 not in hf_model.tokenize(text, special=False)
    ids = hf_model.tokenize("Paris, France")
    assert embedded_model.detokenize([2, *ids]) == hf_model.detokenize([2, *ids]) == "Paris, France"
    assert embedded_model.eos_token_id == hf_model.eos_token_id == 2
    assert embedded_model.vocabulary().size == hf_model.vocabulary().size == 49152
    assert hf_model.reused_prompt_tokens is None and embedded_model.reused_prompt_tokens >= 0  # only llama.cpp caches


def test_f16_greedy_output_equals_transformers(fidelity_model, hf_model):
    params = GenerationParams(max_tokens=24)
    for q in QUESTIONS:
        assert fidelity_model.chat(ask(q), params).text == hf_model.chat(ask(q), params).text
    assert "Paris" in fidelity_model.chat(FRANCE, params).text


def test_default_backend_answers_with_usage(embedded_model):
    result = embedded_model.chat(ask("What is 2+2?"), GenerationParams(max_tokens=24))
    assert "4" in result.text
    assert result.usage.prompt_tokens == len(embedded_model.encode_chat(ask("What is 2+2?")))
    assert result.finish_reason == "stop"


def test_concurrent_requests_are_batched_and_give_the_sequential_answers(fidelity_model):
    params = GenerationParams(max_tokens=16)
    expected = [fidelity_model.chat(ask(q), params).text for q in QUESTIONS]
    got: dict[int, str] = {}

    def run(i: int) -> None:
        got[i] = fidelity_model.chat(ask(QUESTIONS[i]), params).text

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(QUESTIONS))] == expected


def test_more_requests_than_slots_all_complete(fidelity_model):
    params = GenerationParams(max_tokens=4)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(fidelity_model.chat(FRANCE, params).usage.completion_tokens))
        for _ in range(fidelity_model.slots * 2 + 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [4] * (fidelity_model.slots * 2 + 1)


def test_logits_hook_sees_growing_input_ids(embedded_model):
    seen: list[int] = []

    def ban_first_greedy(input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        seen.append(input_ids.shape[1])
        scores = scores.clone()
        scores[:, 504] = float("-inf")  # "The"
        return scores

    prompt_len = len(embedded_model.encode_chat(FRANCE))
    result = embedded_model.chat(FRANCE, GenerationParams(max_tokens=6, logits_processors=(ban_first_greedy,)))
    assert seen == list(range(prompt_len, prompt_len + len(seen)))
    assert len(seen) == result.usage.completion_tokens
    assert not result.text.startswith("The")


def test_a_failing_hook_fails_only_its_request(embedded_model):
    def broken(input_ids, scores):
        raise InvalidRequestError("format cannot be met")

    with pytest.raises(InvalidRequestError, match="format cannot be met"):
        embedded_model.chat(FRANCE, GenerationParams(max_tokens=4, logits_processors=(broken,)))
    assert embedded_model.chat(FRANCE, GenerationParams(max_tokens=2)).usage.completion_tokens == 2


def test_stop_sequences_and_streaming(fidelity_model):
    chunks = list(fidelity_model.stream(FRANCE, GenerationParams(max_tokens=32, stop=("Paris",))))
    text = "".join(c.text for c in chunks)
    assert "Paris" not in text and text.startswith("The capital")
    assert chunks[-1].finish_reason == "stop"


def test_abandoned_stream_frees_its_slot(fidelity_model):
    for _ in range(fidelity_model.slots + 1):  # more abandoned streams than slots
        stream = fidelity_model.stream(FRANCE, GenerationParams(max_tokens=200))
        next(stream)
        stream.close()
    assert fidelity_model.chat(FRANCE, GenerationParams(max_tokens=3)).usage.completion_tokens == 3


def test_scoring_matches_transformers(fidelity_model, hf_model):
    prompt = hf_model.encode_chat(FRANCE)
    completion = hf_model.tokenizer.encode("The capital of France is Paris.", add_special_tokens=False)
    ours = fidelity_model.sequence_logprobs(prompt, completion)
    theirs = hf_model.sequence_logprobs(prompt, completion)
    assert ours == pytest.approx(theirs, abs=0.05)
    nxt = fidelity_model.next_token_logprobs(prompt)
    assert nxt.shape == (fidelity_model.n_vocab,)
    assert float(nxt.exp().sum()) == pytest.approx(1.0, abs=1e-3)


def test_a_cached_prompt_prefix_is_reused_and_changes_nothing(fidelity_model, hf_model):
    """Prompt caching: a request that starts like the previous one on its sequence skips that part of the prefill;
    the answers stay those of the transformers path (f16), turn after turn."""
    params = GenerationParams(max_tokens=12)
    first = [{"role": "user", "content": "Name a large city in France."}]
    answer = fidelity_model.chat(first, params).text
    assert answer == hf_model.chat(first, params).text
    follow_up = [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": "And in Spain?"}]
    before = fidelity_model.reused_prompt_tokens
    assert fidelity_model.chat(follow_up, params).text == hf_model.chat(follow_up, params).text
    assert fidelity_model.reused_prompt_tokens - before >= len(fidelity_model.encode_chat(first))
    before = fidelity_model.reused_prompt_tokens
    again = fidelity_model.chat(follow_up, params).text  # the same prompt: all but its last token is cached
    assert again == hf_model.chat(follow_up, params).text
    assert fidelity_model.reused_prompt_tokens - before == len(fidelity_model.encode_chat(follow_up)) - 1
    prompt = fidelity_model.encode_chat(FRANCE)
    completion = fidelity_model.tokenize("The capital of France is Paris.", special=False)
    fresh = fidelity_model.sequence_logprobs(prompt, completion)
    assert fidelity_model.sequence_logprobs(prompt, completion) == pytest.approx(fresh, abs=1e-4)


def test_budget_errors(embedded_model):
    with pytest.raises(InvalidRequestError, match="exceeds the model's context"):
        embedded_model.chat(FRANCE, GenerationParams(max_tokens=embedded_model.context_length))
    with pytest.raises(InvalidRequestError, match="empty"):
        list(embedded_model.stream_ids([], GenerationParams()))


def test_auto_falls_back_to_transformers_when_llama_cpp_is_missing(monkeypatch, caplog):
    import sys

    from prunekit.decoding.backends.loader import load_embedded
    from prunekit.decoding.backends.local import LocalModel

    monkeypatch.setitem(sys.modules, "prunekit.decoding.backends.llamacpp", None)  # import now raises ImportError
    with caplog.at_level("WARNING"):
        model = load_embedded("auto")
    assert isinstance(model, LocalModel)
    assert any("llama-cpp-python is not available" in r.message for r in caplog.records)


def test_a_closed_model_frees_its_memory_and_refuses_requests():
    from prunekit.decoding.errors import BackendError

    model = llamacpp.LlamaCppModel.embedded(slots=1, slot_context=256)
    assert model.chat(FRANCE, GenerationParams(max_tokens=2)).text
    model.close()
    model.close()  # twice is fine
    for call in (lambda: model.chat(FRANCE), lambda: model.tokenize("hi"), lambda: model.detokenize([1, 2])):
        with pytest.raises(BackendError, match="closed"):
            call()


def test_a_stream_dropped_unread_takes_no_sequence():
    model = llamacpp.LlamaCppModel.embedded(slots=1, slot_context=256)
    try:
        dropped = [model.stream(FRANCE, GenerationParams(max_tokens=200)) for _ in range(3)]
        del dropped  # never read: nothing was queued, so the one sequence is free at once
        assert not model._waiting
        assert model.chat(FRANCE, GenerationParams(max_tokens=4)).text
    finally:
        model.close()


@pytest.mark.parametrize(("amx", "amx_works", "extra_buffers"), [(True, False, False), (False, False, True)])
def test_llama_cpp_extra_buffers_stay_off_where_the_amx_probe_failed(monkeypatch, amx, amx_works, extra_buffers):
    # a build whose AMX kernels crash (decoding/backends/llamacpp_amx.py) must not load
    # them; other CPUs keep the default
    cpu_really_has_amx = llamacpp.cpu_has_amx()
    monkeypatch.setattr(llamacpp, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(llamacpp, "amx_kernels_work", lambda path: amx_works)
    seen = []
    load = llamacpp.llama.llama_model_load_from_file

    def spy(path, params):
        seen.append(params.use_extra_bufts)
        return load(path, params)

    monkeypatch.setattr(llamacpp.llama, "llama_model_load_from_file", spy)
    model = llamacpp.LlamaCppModel.embedded(quant="q8_0", slots=1, slot_context=256)
    try:
        assert seen == [extra_buffers]
        if not extra_buffers or not cpu_really_has_amx:  # AMX kernels here may crash: only the safe case runs
            assert model.chat(FRANCE, GenerationParams(max_tokens=2)).text
    finally:
        model.close()


def test_penalties_break_a_repetition_loop_and_match_transformers(fidelity_model, hf_model):
    repeat = ask("Repeat the word yes ten times.")
    plain = fidelity_model.chat(repeat, GenerationParams(max_tokens=24)).text
    penalised = GenerationParams(max_tokens=24, frequency_penalty=2.0)
    fewer = fidelity_model.chat(repeat, penalised).text
    assert fewer.lower().count("yes") < plain.lower().count("yes")
    assert fewer == hf_model.chat(repeat, penalised).text  # the same penalty on both paths
    assert fidelity_model.chat(repeat, GenerationParams(max_tokens=24)).text == plain  # nothing carried over


def test_the_chat_loop_guard_breaks_the_france_loop(embedded_model):
    from prunekit.eval.chat import repeated_ngram

    # Without the guard, greedy decoding on the quantized weights loops to max_tokens (measured: Q8_0 gives
    # "L'Étoile, la Cité, la France, la France, la France, ...", Q4_1 "L'Étoile, la Marseillaise, la femme au roi,
    # la femme au roi, ..."; f16 and transformers answer "The capital of France is Paris.").
    plain = embedded_model.chat(FRANCE, GenerationParams(max_tokens=128)).text
    assert repeated_ngram(plain), f"the unguarded answer no longer loops ({plain!r}): pick another loop for this test"
    # chat's default guard (PRUNEKIT_REPETITION_PENALTY's default) ends it
    from prunekit.app.settings import Settings

    guard = Settings.model_fields["repetition_penalty"].default
    guarded = embedded_model.chat(FRANCE, GenerationParams(max_tokens=128, repetition_penalty=guard))
    assert not repeated_ngram(guarded.text) and guarded.finish_reason == "stop", guarded.text
