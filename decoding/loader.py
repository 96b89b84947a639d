"""Pick and load the embedded model's backend: the llama.cpp fast path when it is built, else transformers."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from decoding.protocol import ChatModel

__all__ = ["load_embedded"]

log = logging.getLogger(__name__)

EmbeddedBackend = Literal["auto", "llamacpp", "hf"]


def load_embedded(
    backend: EmbeddedBackend = "auto", cache_dir: Path | None = None, quant: str | None = None
) -> ChatModel:
    """The embedded SmolLM2-135M-Instruct as a `ChatModel`.

    `auto` takes llama.cpp when `llama-cpp-python` imports and falls back to transformers with a
    one-line warning when it does not (e.g. its build failed on this machine). `quant` picks the
    llama.cpp weights: `q4_1` or `q8_0` (speed; the default is the faster of the two on this CPU) or `f16`
    (the transformers path's exact output); `$PRUNEKIT_EMBEDDED_QUANT` sets it too.
    """
    if backend in ("auto", "llamacpp"):
        try:
            from decoding.llamacpp import LlamaCppModel
        except ImportError as exc:
            if backend == "llamacpp":
                raise
            log.warning("llama-cpp-python is not available (%s): using the slower transformers backend", exc)
        else:
            return LlamaCppModel.embedded(cache_dir, quant or os.environ.get("PRUNEKIT_EMBEDDED_QUANT") or None)
    from decoding.local import LocalModel

    return LocalModel.embedded(cache_dir)
