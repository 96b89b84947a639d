"""Our token DFA held to an independent implementation, outlines-core, with Python's `regex` deciding where the
two differ; and the reference mask itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
import regex
import torch

from prunekit.decoding.decog.errors import GuidanceError
from prunekit.decoding.decog.formats import Format, parse_format
from prunekit.decoding.decog.guidance import HardMaskProcessor
from prunekit.decoding.decog.outlines_ref import OutlinesMaskProcessor, _ascii_classes, outlines_regex
from prunekit.decoding.decog.token_dfa import compile_token_dfa
from prunekit.decoding.decog.vocab import TokenVocabulary
from tests.decoding.decog.conftest_helpers import smollm2_tokenizer

# Formats whose regex outlines-core reads exactly as we do (no wildcard before a pivot): pivots spanning tokens,
# whitespace variants, multi-byte literals, JSON, and the ASCII classes.
EXACT_SPECS = [
    r"regex:-?\d+(\.\d+)?",
    r"regex:\s*[A-Z]\w{2,5}\s",
    "choice:yes|no|maybe",
    "choice:café|naïve|日本語",
    'json:{"verdict": ["correct", "incorrect"]}',
    'json:{"answer": "string", "n": "integer", "ok": "boolean", "x": "number", "z": "null"}',
    'json:{"city": {"pattern": "[A-Z][a-z]+"}}',
    "pivot:The answer is <int>",
    "pivot:<word> is <choice:big|small>.",
    "pivot:<line>\n<number>",
    "pivot:Note: <free:12>",
]


@pytest.fixture(scope="module")
def vocab() -> TokenVocabulary:
    return TokenVocabulary.from_tokenizer(smollm2_tokenizer())


@pytest.fixture(scope="module")
def whole_characters(vocab: TokenVocabulary) -> np.ndarray:
    """(V,) bool: tokens whose bytes are complete UTF-8 text (no half character at either end)."""
    out = np.zeros(vocab.size, dtype=bool)
    for i, data in enumerate(vocab.token_bytes):
        if data:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            out[i] = True
    return out


def _prefix_ok(fmt: Format, text: str) -> bool:
    """Python's `regex` module, a third opinion: can `text` still be extended into a full match?"""
    return regex.fullmatch(fmt.python_regex(), text, flags=regex.ASCII, partial=True) is not None


@pytest.mark.parametrize("spec", EXACT_SPECS)
def test_random_walks_agree_with_outlines_core_or_python_regex(
    spec: str, vocab: TokenVocabulary, whole_characters: np.ndarray
) -> None:
    """Outlines-core never allows a token we forbid; where it forbids one we allow (its quirks, see
    `outlines_ref`), Python's `regex` partial matching decides, and must side with us."""
    assert outlines_regex(spec)[1]
    fmt = parse_format(spec)
    dfa = compile_token_dfa(fmt, vocab)
    finish = dfa.min_tokens_to_finish()
    eos = vocab.eos_token_ids[0]
    rng = np.random.default_rng(0)
    steps = 0
    for _ in range(8):
        reference = OutlinesMaskProcessor(spec, vocab)
        state, text = dfa.initial_state, b""
        for _ in range(20):
            ours, theirs = dfa.next_state[state] >= 0, reference.allowed()
            assert not (theirs & ~ours).any(), spec
            whole_text = _decoded(text)
            if whole_text is not None:
                assert ours[eos] == fmt.matches(whole_text), (spec, whole_text)
                for token in np.flatnonzero((ours ^ theirs) & whole_characters):
                    assert _prefix_ok(fmt, whole_text + vocab.token_bytes[token].decode()), (spec, whole_text, token)
            # Tokens ending mid-character that only we allow can still finish the format.
            assert all(finish[dfa.next_state[state, t]] < 1_000 for t in np.flatnonzero(ours & ~theirs))
            steps += 1
            choices = np.flatnonzero(ours & theirs & ~np.isin(np.arange(vocab.size), vocab.eos_token_ids))
            if not len(choices):
                break
            token = int(rng.choice(choices))
            state = dfa.step(state, token)
            reference.advance(token)
            text += vocab.token_bytes[token]
    assert steps >= 8


def _decoded(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # the walk stopped mid-character
        return None


@pytest.mark.parametrize(
    ("spec", "prefix", "continuation"), [("regex:a|ab", "a", "b"), (r"regex:\d+(x\d+)?", "8", "x")]
)
def test_a_longer_match_stays_reachable_after_a_match(
    spec: str, prefix: str, continuation: str, vocab: TokenVocabulary
) -> None:
    """Full matching: "ab" satisfies `a|ab`. (outlines-core 0.2 reads regexes leftmost-first and forbids the "b".)"""
    tokenizer = smollm2_tokenizer()
    dfa = compile_token_dfa(spec, vocab)
    first, nxt = (tokenizer.convert_tokens_to_ids(t) for t in (prefix, continuation))
    assert dfa.step(dfa.step(dfa.initial_state, first), nxt) != -1
    assert _prefix_ok(parse_format(spec), prefix + continuation)


def test_a_wildcard_before_a_pivot_is_loosened_and_said_so(vocab: TokenVocabulary) -> None:
    pattern, exact = outlines_regex("pivot:<free>The answer is <int>")
    assert not exact and "(?!" not in pattern  # outlines-core has no look-arounds
    assert outlines_regex("choice:a|b") == ("(?:a|b)", True)
    OutlinesMaskProcessor("pivot:<free>The answer is <int>", vocab)  # compiles


@pytest.mark.parametrize(
    ("regex", "ascii"),
    [
        (r"-?\d+", "-?[0-9]+"),
        (r"[\d.]+", "[0-9.]+"),
        (r"\w\s", r"[0-9A-Za-z_][\t\n\x0b\x0c\r ]"),
        (r"[^\d]\D", "[^0-9][^0-9]"),
        (r"[]\d]", "[]0-9]"),
        (r"[\s\S]*", r"(?:[\t\n\x0b\x0c\r ]|[^\t\n\x0b\x0c\r ])*"),  # any character, in either reading
        (r"[a\D]", "(?:[a]|[^0-9])"),
        (r"\\d\.", r"\\d\."),  # an escaped backslash, then a literal "d"
    ],
)
def test_ascii_classes_are_spelled_out(regex: str, ascii: str) -> None:
    assert _ascii_classes(regex) == ascii


def _drive(processor, vocab: TokenVocabulary, favourite: int, steps: int) -> list[int]:
    """Greedy decoding where the LLM always prefers `favourite` (a letter inside a JSON string)."""
    ids, out = [1, 2], []
    for _ in range(steps):
        scores = torch.full((1, vocab.size), -5.0)
        scores[0, favourite] = 5.0
        token = int(processor(torch.tensor([ids]), scores).argmax())
        ids.append(token)
        out.append(token)
        if token in vocab.eos_token_ids:
            break
    return out


def test_outlines_core_is_budget_blind_where_our_mask_is_not(vocab: TokenVocabulary) -> None:
    spec, budget = 'json:{"answer": "string"}', 12
    favourite = smollm2_tokenizer().encode("a", add_special_tokens=False)[0]
    dfa = compile_token_dfa(spec, vocab)
    theirs = _drive(OutlinesMaskProcessor(spec, vocab), vocab, favourite, budget)
    ours = _drive(HardMaskProcessor(dfa, budget), vocab, favourite, budget)
    assert not dfa.accepts(theirs)  # cut mid-string: the model never wanted to close it
    assert dfa.accepts(ours) and len(ours) <= budget


def test_a_token_the_mask_forbade_is_a_clear_error(vocab: TokenVocabulary) -> None:
    processor = OutlinesMaskProcessor("choice:yes|no", vocab)
    scores = torch.zeros(1, vocab.size + 5)  # the model may score more tokens than the tokenizer has
    out = processor(torch.tensor([[1]]), scores)
    assert out.shape == scores.shape and math.isinf(out[0, -1])
    bad = int(np.flatnonzero(~processor.allowed())[10])
    with pytest.raises(GuidanceError, match="not allowed"):
        processor(torch.tensor([[1, bad]]), scores)
