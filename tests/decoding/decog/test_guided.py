"""`GenerationParams.format` on the local backends: the answer follows the format, whatever the prompt."""

import pytest

from prunekit.decoding.decog import parse_format
from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.types import GenerationParams

MATH = [{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples does he have?"}]
PIVOT = "pivot:<free>The answer is <int>"
JSON = 'json:{"answer": "string"}'


@pytest.mark.parametrize("spec", [PIVOT, JSON, "choice:yes|no"])
def test_hard_mask_output_complies_on_llama_cpp(embedded_model, spec):
    result = embedded_model.chat(MATH, GenerationParams(max_tokens=40, format=spec, format_method="hard_mask"))
    assert parse_format(spec).matches(result.text), result.text
    assert result.finish_reason == "stop"


def test_hard_mask_output_complies_on_transformers(hf_model):
    result = hf_model.chat(MATH, GenerationParams(max_tokens=24, format=JSON, format_method="hard_mask"))
    assert parse_format(JSON).matches(result.text), result.text


def test_a_format_that_cannot_fit_the_budget_is_refused(embedded_model):
    with pytest.raises(InvalidRequestError):
        embedded_model.chat(MATH, GenerationParams(max_tokens=2, format=JSON, format_method="hard_mask"))


def test_bad_format_specs_are_refused():
    with pytest.raises(InvalidRequestError):
        GenerationParams(format="")
    with pytest.raises(InvalidRequestError, match="format_method"):
        GenerationParams(format=PIVOT, format_method="magic")


def test_decog_uses_the_weight_stored_with_the_hmm(tmp_path):
    from prunekit.decoding.decog import HMM, TokenVocabulary
    from prunekit.decoding.decog.guided import DEFAULT_CANDIDATE_GAP, FormatGuide
    from tests.decoding.decog.conftest_helpers import smollm2_tokenizer

    tok = smollm2_tokenizer()
    hmm = HMM.random(4, len(tok), seed=0, eos_token_id=tok.eos_token_id)
    hmm.save(tmp_path, metadata={"guidance": {"weight": 0.5, "by_task": {"math": 1.0}}})
    guide = FormatGuide(TokenVocabulary.from_tokenizer(tok), hmm_dir=tmp_path)
    proc = guide.processor('json:{"verdict": ["yes", "no"]}', "decog", 16)
    assert proc.weight == 0.5
    assert proc.candidate_gap == DEFAULT_CANDIDATE_GAP  # the service's speed setting (decoding/decog/guided.py)
