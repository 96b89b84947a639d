import numpy as np
import pytest
import torch

from prunekit.context_pruner.errors import InvalidOptionError
from prunekit.context_pruner.precision import apply_precision, native_bf16, quantize_int8, resolve_precision
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


def test_int8_quantization_keeps_outputs_close():
    model, _ = tiny_model()
    q = quantize_int8(model)
    ids = torch.randint(1000, 2000, (2, 9))
    with torch.no_grad():
        p = torch.softmax(model(ids, torch.ones_like(ids))[0], -1)
        pq = torch.softmax(q(ids, torch.ones_like(ids))[0], -1)
    fp32 = [name for name, m in q.named_modules() if type(m) is torch.nn.Linear]
    assert fp32 and all(name.endswith("output.dense") and "attention" not in name for name in fp32)  # FFN outs
    assert (p - pq).abs().max() < 0.05


@pytest.fixture(scope="module")
def shipped_fp32():
    return ContextPruner(precision="fp32").score([QUESTION], [CONTEXTS], None, 8)


def _errors(reference, other):
    err = np.concatenate([np.abs(a.p_keep - b.p_keep) for a, b in zip(reference, other, strict=True)])
    rerank = max(abs(a.rerank - b.rerank) for a, b in zip(reference, other, strict=True))
    return err, rerank


def test_shipped_int8_pruner_stays_close_to_fp32_on_real_passages(shipped_fp32):
    err, rerank = _errors(shipped_fp32, ContextPruner(precision="int8").score([QUESTION], [CONTEXTS], None, 8))
    # quantizing every Linear (FFN down-projections too) gave 0.098 / 0.235 here and rerank shifts of 0.12
    assert err.mean() < 0.05 and np.quantile(err, 0.9) < 0.15
    assert rerank < 0.08


def test_shipped_bf16_pruner_stays_closer_to_fp32_than_int8(shipped_fp32):
    # bf16 is emulated (slowly) on CPUs without native support, but gives the same numbers: this runs everywhere
    err, rerank = _errors(shipped_fp32, ContextPruner(precision="bf16").score([QUESTION], [CONTEXTS], None, 8))
    assert err.mean() < 0.01 and err.max() < 0.05  # measured here: mean ~0.001
    assert rerank < 0.02
