"""The llguidance hard mask on the embedded model's vocabulary, and how `FormatGuide.resolve` picks between it and
Deco-G."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from prunekit.decoding import GenerationParams
from prunekit.decoding.decog.errors import FormatSpecError
from prunekit.decoding.structured.grammar_mask import GrammarMaskProcessor, check_grammar
from prunekit.decoding.structured.json_output import json_output_spec

NESTED = {
    "type": "object",
    "properties": {"tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
    "required": ["tags"],
}
FLAT = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def _spec(schema):
    return json_output_spec({"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})


def test_masked_greedy_steps_spell_a_valid_answer(embedded_model):
    """Drive the mask by hand over random scores: whatever the model would prefer, only the grammar's tokens win,
    and the text they spell is valid."""
    vocab = embedded_model.vocabulary()
    processor = GrammarMaskProcessor(_spec(NESTED).grammar, vocab)
    generator = torch.Generator().manual_seed(0)
    # Random preferences, leaning towards closing tokens and EOS so that strings end (the mask knows no budget).
    closing = torch.tensor([any(c in (b or b"") for c in b'"]}') for b in vocab.token_bytes], dtype=torch.float32)
    lean = 3.0 * closing
    lean[list(vocab.eos_token_ids)] = 5.0
    ids = [1, 2, 3]  # a stand-in prompt
    for _ in range(200):
        scores = processor(torch.tensor([ids]), torch.randn(1, vocab.size, generator=generator) + lean)
        token = int(scores[0].argmax())
        if token in vocab.eos_token_ids:
            break
        ids.append(token)
    text = b"".join(vocab.token_bytes[t] for t in ids[3:]).decode()
    assert processor.is_complete() and isinstance(json.loads(text)["tags"], list)


def test_resolve_prefers_decog_and_falls_back_to_the_grammar(embedded_model):
    guide = embedded_model.format_guide()
    flat, nested = _spec(FLAT), _spec(NESTED)
    params, report = guide.resolve(GenerationParams(format=flat.decog_format, grammar=flat.grammar))
    assert report["method"] == "decog" and report["states"] > 0 and params.grammar is None
    params, report = guide.resolve(GenerationParams(format=nested.decog_format, grammar=nested.grammar))
    assert report == {"method": "llguidance"} and params.format is None and params.grammar


def test_a_grammar_llguidance_cannot_enforce_is_refused(embedded_model):
    from llguidance import LLMatcher

    grammar = LLMatcher.grammar_from_json_schema({"type": "object", "if": {"type": "object"}, "then": {}})
    with pytest.raises(FormatSpecError, match="cannot be enforced"):
        check_grammar(grammar, embedded_model.vocabulary())


def test_a_rambling_answer_still_closes_inside_its_budget(embedded_model):
    """Scores that never favour ending (a small model writing one long string): with the budget known, the mask
    steers into the shortest way to close in time, then ends; the answer is whole and valid."""
    schema = {
        "type": "object",
        "properties": {"story": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["story", "tags"],
    }
    vocab = embedded_model.vocabulary()
    ramble = torch.zeros(vocab.size)
    ramble[[i for i, b in enumerate(vocab.token_bytes) if b and b.isalpha()]] = 4.0  # letters over anything else
    ramble[list(vocab.eos_token_ids)] = -10.0
    for budget in (12, 40):
        processor = GrammarMaskProcessor(_spec(schema).grammar, vocab, max_new_tokens=budget)
        generator = torch.Generator().manual_seed(budget)
        ids = [1, 2, 3]
        while len(ids) - 3 < budget:
            token = int(
                processor(torch.tensor([ids]), torch.randn(1, vocab.size, generator=generator) + ramble).argmax()
            )
            if token in vocab.eos_token_ids:
                break
            ids.append(token)
        assert token in vocab.eos_token_ids, f"cut at {budget} tokens"
        answer = json.loads(b"".join(vocab.token_bytes[t] for t in ids[3:]).decode())
        assert set(answer) == {"story", "tags"}
        assert budget < 20 or len(answer["story"]) > 20  # with room, the story is written until it must end


def test_near_the_budget_a_number_is_ended_even_by_a_comma(embedded_model):
    """After a number's digit, with a required key still to come, the grammar allows more digits or the comma. The
    comma also starts a new element (a lengthener), so shortening alone would leave only digits, and a model that
    likes digits would write them until `max_tokens` cut the answer open: the number is ended first."""
    from prunekit.decoding.structured.closing import LexState
    from prunekit.decoding.structured.grammar_mask import _Budget

    vocab = embedded_model.vocabulary()
    budget = _Budget(vocab, max_new_tokens=64)
    budget.lex = LexState().after(b'{"n":12')
    (comma,) = embedded_model.tokenize(",", special=False)
    digits = [embedded_model.tokenize(d, special=False)[0] for d in "037"]
    allowed = np.zeros(vocab.size, dtype=np.uint8)
    allowed[[comma, *digits]] = 1
    kept = budget._shortening(allowed)
    assert kept[comma] and not kept[digits].any()
    budget.lex = LexState().after(b'{"s":"12')  # inside a string: digits are text, and the comma is too
    assert budget._shortening(allowed)[digits].all()


def test_without_a_budget_the_mask_does_not_plan(embedded_model):
    processor = GrammarMaskProcessor(_spec(FLAT).grammar, embedded_model.vocabulary())
    assert processor._budget is None


def test_the_way_to_close_is_looked_for_within_bounds(embedded_model, monkeypatch):
    """A request picks the schema and max_tokens: a way too long to take is searched at most `_LONGEST_WAY` deep,
    and only at the regular checks, not at every token."""
    from prunekit.decoding.structured import grammar_mask

    limits: list[int] = []

    def no_way(matcher, moves, lex, limit):
        limits.append(limit)
        return None

    monkeypatch.setattr(grammar_mask, "closing_tokens", no_way)
    vocab = embedded_model.vocabulary()
    processor = GrammarMaskProcessor(_spec(NESTED).grammar, vocab, max_new_tokens=4000)
    ids = [1, 2, 3]
    for _ in range(48):
        token = int(processor(torch.tensor([ids]), torch.zeros(1, vocab.size)).argmax())
        ids.append(token)
    assert limits == [256, 256, 256]  # at tokens 0, 16 and 32
