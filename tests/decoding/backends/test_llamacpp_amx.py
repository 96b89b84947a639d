"""The AMX probe: its verdict cache, its crash handling, and (on AMX CPUs) the AMX kernels against the AVX ones."""

import logging
import subprocess

import pytest

from tests.conftest import require_llamacpp, skip_or_fail

llamacpp = require_llamacpp()
from prunekit.decoding.backends import llamacpp_amx  # noqa: E402
from prunekit.decoding.backends.embedded import embedded_gguf_path  # noqa: E402


def fake_probe(returncode: int, calls: list[list[str]]):
    def run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, returncode, stdout="", stderr="llama_decode failed\n")

    return run


def test_a_passing_probe_is_run_once_per_build_and_model(monkeypatch, tmp_path):
    calls: list[list[str]] = []
    monkeypatch.setattr(llamacpp_amx.subprocess, "run", fake_probe(0, calls))
    gguf = embedded_gguf_path()
    assert llamacpp_amx.amx_kernels_work(gguf, tmp_path)
    assert llamacpp_amx.amx_kernels_work(gguf, tmp_path)
    assert len(calls) == 1 and calls[0][-1] == str(gguf)
    assert llamacpp_amx.amx_kernels_work(tmp_path / "other.gguf", tmp_path)
    assert len(calls) == 2


def test_a_probe_killed_by_sigill_turns_amx_off_with_one_warning(monkeypatch, tmp_path, caplog):
    calls: list[list[str]] = []
    monkeypatch.setattr(llamacpp_amx.subprocess, "run", fake_probe(-4, calls))
    with caplog.at_level(logging.WARNING, logger="prunekit.decoding.backends.llamacpp_amx"):
        assert not llamacpp_amx.amx_kernels_work(embedded_gguf_path(), tmp_path)
        assert not llamacpp_amx.amx_kernels_work(embedded_gguf_path(), tmp_path)
    assert len(calls) == 1
    assert [r.getMessage() for r in caplog.records if "SIGILL" in r.getMessage()] != []
    assert len(caplog.records) == 1


def test_a_probe_that_hangs_or_fails_turns_amx_off(monkeypatch, tmp_path, caplog):
    def hang(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr(llamacpp_amx.subprocess, "run", hang)
    assert not llamacpp_amx.amx_kernels_work(embedded_gguf_path(), tmp_path)
    monkeypatch.setattr(llamacpp_amx.subprocess, "run", fake_probe(1, []))
    assert not llamacpp_amx.amx_kernels_work(tmp_path / "other.gguf", tmp_path)
    assert "llama_decode failed" in caplog.text


def test_a_rebuilt_llama_cpp_is_probed_again(monkeypatch, tmp_path):
    calls: list[list[str]] = []
    monkeypatch.setattr(llamacpp_amx.subprocess, "run", fake_probe(-4, calls))
    assert not llamacpp_amx.amx_kernels_work(embedded_gguf_path(), tmp_path)
    monkeypatch.setattr(llamacpp_amx, "_build_fingerprint", lambda: "a rebuilt libggml-cpu")
    monkeypatch.setattr(llamacpp_amx.subprocess, "run", fake_probe(0, calls))
    assert llamacpp_amx.amx_kernels_work(embedded_gguf_path(), tmp_path)
    assert len(calls) == 2


def test_cpus_without_amx_keep_llama_cpp_defaults_without_a_probe(monkeypatch):
    def no_probe(*args, **kwargs):
        raise AssertionError("probed a CPU without AMX")

    monkeypatch.setattr(llamacpp, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(llamacpp, "amx_kernels_work", no_probe)
    assert llamacpp._extra_buffers_work(embedded_gguf_path())
    assert llamacpp.default_quant() == "q8_0"


def test_the_default_weights_follow_the_probe(monkeypatch):
    monkeypatch.setattr(llamacpp, "cpu_has_amx", lambda: True)
    monkeypatch.setattr(llamacpp, "amx_kernels_work", lambda path: True)
    assert llamacpp.default_quant() == "q4_1"
    assert llamacpp.prepare_fast_weights() == embedded_gguf_path()  # the shipped file, not a re-encoded copy
    monkeypatch.setattr(llamacpp, "amx_kernels_work", lambda path: False)
    assert llamacpp.default_quant() == "q8_0"
    assert not llamacpp._extra_buffers_work(embedded_gguf_path())


@pytest.mark.skipif(not llamacpp_amx.cpu_has_amx(), reason="this CPU has no AMX tiles")
def test_amx_kernels_compute_what_the_avx_kernels_compute(monkeypatch, tmp_path):
    """The real probe, then the same Q4_1 weights through the AMX and the AVX kernels: same next-token log-probs."""
    if not llamacpp_amx.amx_kernels_work(embedded_gguf_path(), tmp_path):
        skip_or_fail("this llama-cpp-python build's AMX kernels crash: rebuild it with the Makefile's -fno-dse flags")
    monkeypatch.setattr(llamacpp, "amx_kernels_work", lambda path: True)
    amx = llamacpp.LlamaCppModel(embedded_gguf_path(), slots=1, slot_context=512)
    monkeypatch.setattr(llamacpp, "amx_kernels_work", lambda path: False)
    avx = llamacpp.LlamaCppModel(embedded_gguf_path(), slots=1, slot_context=512)
    try:
        messages = [{"role": "user", "content": "Summarise the water cycle in two sentences for a child."}]
        ids = amx.encode_chat(messages)  # a prompt of many tokens: prefill goes through the tile kernels
        assert len(ids) > 16
        for prefix in (ids, ids[: len(ids) // 2]):
            via_amx, via_avx = amx.next_token_logprobs(prefix), avx.next_token_logprobs(prefix)
            assert int(via_amx.argmax()) == int(via_avx.argmax())
            # Both kernels quantize the activations their own way, each as far from the fp32 transformers path
            # (KL ~0.005 measured); a kernel computing garbage would be off by nats.
            kl = float((via_avx.exp() * (via_avx - via_amx)).sum())
            assert kl < 0.02
    finally:
        amx.close()
        avx.close()
