"""The time-to-first-token prompt of `prunekit bench decode` has the length the bar names."""

from __future__ import annotations

from eval.bench_decode import ttft_messages

TEMPLATE_TOKENS = 7


class WordModel:
    """A fake chat model whose tokens are whitespace words, plus a fixed chat template."""

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
