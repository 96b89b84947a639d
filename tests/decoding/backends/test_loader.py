"""Loading an in-process model by path (a GGUF file or a transformers folder) with the HMM its guidance uses."""

from __future__ import annotations

import json

import pytest

from prunekit.decoding.backends.embedded import embedded_hf_dir
from prunekit.decoding.backends.loader import load_local_model
from prunekit.decoding.decog import HMM
from prunekit.decoding.decog.errors import VocabularyMismatchError
from prunekit.decoding.decog.guided import DEFAULT_HMM_DIR
from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.types import GenerationParams
from tests.conftest import require_llamacpp

llamacpp = require_llamacpp()

VERDICT = 'json:{"verdict": ["correct", "incorrect"]}'
QUESTION = [{"role": "user", "content": "Is Paris the capital of France?"}]


@pytest.fixture(scope="module")
def gguf_model():
    """The embedded weights loaded as a user's GGUF file would be, with the shipped HMM named explicitly."""
    model = load_local_model(llamacpp.prepare_fast_weights(), hmm_dir=DEFAULT_HMM_DIR)
    yield model
    model.close()


def test_a_gguf_file_runs_on_llama_cpp_with_its_hmm(gguf_model):
    assert isinstance(gguf_model, llamacpp.LlamaCppModel)
    assert gguf_model.hmm_dir == DEFAULT_HMM_DIR and gguf_model.eos_token_id == 2  # SmolLM2's <|im_end|>
    result = gguf_model.chat(QUESTION, GenerationParams(max_tokens=16, format=VERDICT, format_method="decog"))
    assert json.loads(result.text)["verdict"] in ("correct", "incorrect")


def test_the_models_own_hmm_is_the_one_guidance_uses(tmp_path, gguf_model):
    # An HMM over another vocabulary: guidance must refuse it, which shows it is the one loaded.
    HMM.random(4, 10, seed=0, eos_token_id=0).save(tmp_path / "hmm")
    model = llamacpp.LlamaCppModel(gguf_model.path, slots=1, hmm_dir=tmp_path / "hmm")
    try:
        assert model.chat(QUESTION, GenerationParams(max_tokens=8, format=VERDICT, format_method="hard_mask")).text
        with pytest.raises(VocabularyMismatchError, match="10 tokens"):
            model.chat(QUESTION, GenerationParams(max_tokens=8, format=VERDICT, format_method="decog"))
    finally:
        model.close()


def test_a_transformers_folder_runs_on_transformers():
    from prunekit.decoding.backends.local import LocalModel

    model = load_local_model(embedded_hf_dir(), hmm_dir=DEFAULT_HMM_DIR)
    assert isinstance(model, LocalModel) and model.hmm_dir == DEFAULT_HMM_DIR and model.eos_token_id == 2


def test_anything_else_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    for path in (tmp_path / "notes.txt", tmp_path, tmp_path / "missing.gguf"):
        with pytest.raises(InvalidRequestError, match=r"neither a \.gguf file nor a transformers model folder"):
            load_local_model(path)
