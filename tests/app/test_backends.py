"""Which in-process model the settings build: the embedded one, a user's GGUF file or transformers folder, and the
HMM its format guidance uses."""

from __future__ import annotations

import pytest

from prunekit.app.backends import build_chat_model
from prunekit.app.settings import Settings
from prunekit.decoding.decog.guided import DEFAULT_HMM_DIR
from prunekit.decoding.errors import InvalidRequestError
from tests.conftest import require_llamacpp


def test_a_gguf_file_needs_the_embedded_backend_and_a_folder_needs_hf(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"")
    with pytest.raises(InvalidRequestError, match="PRUNEKIT_BACKEND=embedded"):
        build_chat_model(Settings(backend="hf", model_path=gguf))
    with pytest.raises(InvalidRequestError, match="PRUNEKIT_BACKEND=hf"):
        build_chat_model(Settings(backend="embedded", model_path=tmp_path))


def test_a_gguf_model_path_runs_on_llama_cpp_with_the_hmm_dir_setting(tmp_path):
    llamacpp = require_llamacpp()
    settings = Settings(backend="embedded", model_path=llamacpp.prepare_fast_weights(), hmm_dir=DEFAULT_HMM_DIR)
    model = build_chat_model(settings)
    try:
        assert isinstance(model, llamacpp.LlamaCppModel) and model.hmm_dir == DEFAULT_HMM_DIR
        assert model.chat([{"role": "user", "content": "Say hi."}]).text
    finally:
        model.close()


@pytest.mark.parametrize(
    ("backend", "requested", "format", "expected"),
    [
        ("embedded", None, None, 1.25),  # the loop guard, from PRUNEKIT_REPETITION_PENALTY
        ("hf", None, None, 1.25),
        ("embedded", 1.0, None, 1.0),  # a request may turn it off
        ("embedded", 1.5, "json:{}", 1.5),  # or ask for one, format or not
        ("embedded", None, 'json:{"a": "string"}', None),  # a format repeats by design: no default guard
        ("openai", None, None, None),  # a remote server keeps its own default: nothing is sent
        ("openai", 1.1, None, 1.1),
    ],
)
def test_chat_repetition_penalty(backend, requested, format, expected):
    from prunekit.app.backends import chat_repetition_penalty

    settings = Settings(backend=backend, repetition_penalty=1.25)
    assert chat_repetition_penalty(settings, requested, format) == expected


@pytest.mark.parametrize("value", ["0", "2.5", "-1", "x"])
def test_a_bad_repetition_penalty_setting_names_its_variable(monkeypatch, value):
    from prunekit.app.cli.common import load_settings

    monkeypatch.setenv("PRUNEKIT_REPETITION_PENALTY", value)
    with pytest.raises(InvalidRequestError, match="PRUNEKIT_REPETITION_PENALTY"):
        load_settings()
