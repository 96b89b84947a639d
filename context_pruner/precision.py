"""How the pruner's encoder runs numerically on a CPU: bf16, int8 or fp32, and which one `auto` picks.

A CPU that multiplies bf16 matrices natively (Intel AMX or AVX512-BF16) runs the whole model in bf16 through
oneDNN: measured on 2 cores of a Xeon with AMX, 256-token passages, `prunekit bench prune`: bf16 ~110
passages/s, torch's int8 dynamic quantization ~45, fp32 ~45; and bf16 is also the more faithful of the fast paths
(40 HotpotQA training questions, 400 passages, token keep probabilities against fp32: bf16 mean error 0.0011, 99th
percentile 0.009). Every other CPU gets int8: ONNX Runtime's fused BERT graph with int8 matrix products
(`context_pruner.onnx_encoder`, mean error 0.011, 99th percentile 0.089), the fastest option there (bf16 is
emulated and slow).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import nn

from prunekit.context_pruner.errors import InvalidOptionError

__all__ = ["PRECISIONS", "Precision", "apply_precision", "native_bf16", "resolve_precision"]

Precision = Literal["auto", "bf16", "int8", "fp32"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


def native_bf16() -> bool:
    """True when this CPU has bf16 matrix instructions (AMX tiles or AVX512-BF16) that torch's kernels use."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private probes; absent means "no"
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str) -> str:
    """`auto` -> `bf16` on CPUs with native bf16, else `int8`; other names pass through once checked."""
    if precision not in PRECISIONS:
        raise InvalidOptionError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16() else "int8"
    return precision


def apply_precision(model: nn.Module, precision: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The model ready for inference in `precision` (resolved first): the torch model (bf16, fp32; changed in
    place), or for int8 its ONNX Runtime graph (`context_pruner.onnx_encoder`, built once into the user cache)."""
    resolved = resolve_precision(precision)
    model = model.eval()
    if resolved == "bf16":
        # Every tensor in bf16, LayerNorm included: as faithful as autocast here (mean error 0.0011 vs 0.0009)
        # and ~25 % faster, since no activation is cast back and forth between layers.
        return model.to(torch.bfloat16)
    if resolved == "int8":
        from prunekit.context_pruner.onnx_encoder import onnx_encoder
        from prunekit.decoding.backends.embedded import default_cache_dir

        return onnx_encoder(model.float(), default_cache_dir() / "context_pruner")
    return model.float()
