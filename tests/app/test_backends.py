"""Which in-process model the settings build: the embedded one, a user's GGUF file or transformers folder, and the
HMM its format guidance uses."""

from __future__ import annotations

import pytest

from app.backends import build_chat_model
from app.settings import Settings
from decoding.errors import InvalidRequestError
from decoding.guided import DEFAULT_HMM_DIR


def test_a_gguf_file_needs_the_embedded_backend_and_a_folder_needs_hf(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"")
    with pytest.raises(InvalidRequestError, match="PRUNEKIT_BACKEND=embedded"):
        build_chat_model(Settings(backend="hf", model_path=gguf))
    with pytest.raises(InvalidRequestError, match="PRUNEKIT_BACKEND=hf"):
        build_chat_model(Settings(backend="embedded", model_path=tmp_path))


def test_a_gguf_model_path_runs_on_llama_cpp_with_the_hmm_dir_setting(tmp_path):
    llamacpp = pytest.importorskip("decoding.llamacpp", reason="llama-cpp-python is not built on this machine")
    settings = Settings(backend="embedded", model_path=llamacpp.prepare_fast_weights(), hmm_dir=DEFAULT_HMM_DIR)
    model = build_chat_model(settings)
    try:
        assert isinstance(model, llamacpp.LlamaCppModel) and model.hmm_dir == DEFAULT_HMM_DIR
        assert model.chat([{"role": "user", "content": "Say hi."}]).text
    finally:
        model.close()
