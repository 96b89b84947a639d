import numpy as np
import pytest
import torch

from prunekit.context_pruner.errors import InvalidOptionError
from prunekit.context_pruner.onnx_encoder import OnnxEncoder, onnx_encoder
from prunekit.context_pruner.precision import apply_precision, native_bf16, resolve_precision
from prunekit.context_pruner.pruner import ContextPruner
from tests.context_pruner.helpers import tiny_model

QUESTION = "Which river flows through the city where the Eiffel Tower stands?"
CONTEXTS = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named after "
    "the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889.",
    "The Seine is a 777-kilometre-long river in northern France. It flows through Paris into the English "
    "Channel at Le Havre. Its drainage basin covers most of northern France.",
    "Bananas are elongated, edible fruits produced by several kinds of large herbaceous flowering plants. "
    "In some countries, bananas used for cooking may be called plantains.",
]


@pytest.mark.parametrize("amx, avx512_bf16, expected", [(True, False, "bf16"), (False, True, "bf16"),
                                                         (False, False, "int8")])  # fmt: skip
def test_auto_picks_bf16_only_where_the_cpu_has_it(monkeypatch, amx, avx512_bf16, expected):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    assert native_bf16() == (expected == "bf16")
    assert resolve_precision("auto") == expected
    assert resolve_precision("fp32") == "fp32"  # explicit names are not second-guessed


def test_unknown_precision_is_a_specific_error():
    with pytest.raises(InvalidOptionError, match="precision must be one of auto, bf16, int8, fp32"):
        resolve_precision("fp8")
    with pytest.raises(InvalidOptionError, match="precision"):
        ContextPruner(precision="half")  # type: ignore[arg-type]


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_apply_precision_sets_the_dtype(precision, dtype):
    model, _ = tiny_model()
    out = apply_precision(model, precision)
    assert {p.dtype for p in out.parameters()} == {dtype}
    assert not out.training


def test_int8_runs_on_onnx_runtime_close_to_fp32_and_is_built_once(tmp_path):
    model, _ = tiny_model()
    ids = torch.randint(1000, 2000, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # a padded row: the fused attention must honour the mask
    with torch.no_grad():
        logits, rerank = model.eval()(ids, mask, torch.zeros_like(ids))
    encoder = onnx_encoder(model, tmp_path)
    q_logits, q_rerank = encoder(ids, mask, torch.zeros_like(ids))
    assert isinstance(encoder, OnnxEncoder) and q_logits.shape == logits.shape and q_rerank.shape == rerank.shape
    assert (torch.softmax(logits, -1) - torch.softmax(q_logits, -1))[mask.bool()].abs().max() < 0.05
    assert list(tmp_path.glob("*.onnx")) == [encoder.path]
    mtime = encoder.path.stat().st_mtime_ns
    assert onnx_encoder(model, tmp_path).path == encoder.path and encoder.path.stat().st_mtime_ns == mtime  # reused
    with torch.no_grad():
        next(model.token_head.parameters()).add_(1.0)  # other weights: another graph, never a stale one
    assert onnx_encoder(model, tmp_path).path != encoder.path


def test_the_ffn_down_projections_stay_in_fp32(tmp_path):
    import onnx

    model, _ = tiny_model()
    graph = onnx.load(onnx_encoder(model, tmp_path).path).graph
    fp32 = [n.name for n in graph.node if n.op_type == "MatMul"]
    quantized = [n.name for n in graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention")]
    assert fp32 and all("/output/dense/" in name and "/attention/" not in name for name in fp32)
    assert quantized


@pytest.fixture(scope="module")
def shipped_fp32():
    return ContextPruner(precision="fp32").score([QUESTION], [CONTEXTS], None, 8)


def _errors(reference, other):
    err = np.concatenate([np.abs(a.p_keep - b.p_keep) for a, b in zip(reference, other, strict=True)])
    rerank = max(abs(a.rerank - b.rerank) for a, b in zip(reference, other, strict=True))
    return err, rerank


def test_shipped_int8_pruner_stays_close_to_fp32_on_real_passages(shipped_fp32):
    err, rerank = _errors(shipped_fp32, ContextPruner(precision="int8").score([QUESTION], [CONTEXTS], None, 8))
    assert err.mean() < 0.05 and np.quantile(err, 0.9) < 0.15
    assert rerank < 0.08


def test_shipped_bf16_pruner_stays_closer_to_fp32_than_int8(shipped_fp32):
    # bf16 is emulated (slowly) on CPUs without native support, but gives the same numbers: this runs everywhere
    err, rerank = _errors(shipped_fp32, ContextPruner(precision="bf16").score([QUESTION], [CONTEXTS], None, 8))
    assert err.mean() < 0.01 and err.max() < 0.05  # measured here: mean ~0.001
    assert rerank < 0.02
