"""Load an in-process model: the embedded one on its fast path (llama.cpp when it is built, else transformers), or a
user's GGUF file or transformers folder by path."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.protocol import LocalBackend

__all__ = ["check_model_path", "load_embedded", "load_local_model"]

log = logging.getLogger(__name__)

EmbeddedBackend = Literal["auto", "llamacpp", "hf"]


def load_embedded(
    backend: EmbeddedBackend = "auto",
    cache_dir: Path | None = None,
    quant: str | None = None,
    hmm_dir: Path | None = None,
    adapter: Path | None = None,
) -> LocalBackend:
    """The embedded SmolLM2-135M-Instruct as a `LocalBackend`, with a LoRA `adapter` (peft folder) merged in when
    given (e.g. the SQL agent's, `nl2sql.adapter`).

    `auto` takes llama.cpp when `llama-cpp-python` imports and falls back to transformers with a
    one-line warning when it does not (e.g. its build failed on this machine). `quant` picks the
    llama.cpp weights: `q4_1` or `q8_0` (speed; the default is the faster of the two on this CPU) or `f16`
    (the transformers path's exact output); `$PRUNEKIT_EMBEDDED_QUANT` sets it too. `hmm_dir`: the HMM for
    format guidance (default: the shipped one).
    """
    if backend in ("auto", "llamacpp"):
        try:
            from prunekit.decoding.backends.llamacpp import LlamaCppModel
        except ImportError as exc:
            if backend == "llamacpp":
                raise
            log.warning("llama-cpp-python is not available (%s): using the slower transformers backend", exc)
        else:
            quant = quant or os.environ.get("PRUNEKIT_EMBEDDED_QUANT") or None
            return LlamaCppModel.embedded(cache_dir, quant, adapter, hmm_dir=hmm_dir)
    from prunekit.decoding.backends.local import LocalModel

    return LocalModel.embedded(cache_dir, hmm_dir=hmm_dir, adapter=adapter)


def check_model_path(path: Path) -> Path:
    """`path` when it can be a local model (a .gguf file or a transformers folder with config.json); an
    `InvalidRequestError` saying why not otherwise. Cheap: front ends run it before they read data or load anything."""
    if not path.exists():
        raise InvalidRequestError(f"{path} does not exist")
    if (path.is_file() and path.suffix.lower() == ".gguf") or (path / "config.json").is_file():
        return path
    raise InvalidRequestError(f"{path} is neither a .gguf file nor a transformers model folder (with config.json)")


def load_local_model(path: Path | None = None, *, hmm_dir: Path | None = None) -> LocalBackend:
    """An in-process model with logits access (what format guidance, Deco-G distillation and its eval need).

    `path`: a GGUF file (llama.cpp), a transformers model folder, or None for the embedded model. `hmm_dir`: the
    HMM distilled for that model (`prunekit train hmm --model`); None means the shipped one, which fits only the
    embedded model's tokenizer.
    """
    if path is None:
        return load_embedded(hmm_dir=hmm_dir)
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".gguf":
        from prunekit.decoding.backends.llamacpp import LlamaCppModel

        return LlamaCppModel(path, hmm_dir=hmm_dir)
    if path.is_dir() and (path / "config.json").is_file():
        from prunekit.decoding.backends.local import LocalModel

        return LocalModel(path, hmm_dir=hmm_dir)
    raise InvalidRequestError(f"{path} is neither a .gguf file nor a transformers model folder (with config.json)")
