"""Whether llama.cpp's Intel AMX kernels run on this machine, probed once in a child process.

On a CPU with AMX tiles, llama.cpp's "extra buffer types" move the quantized weights into its AMX matmul
kernels: on a 2-core Xeon VM they cut the time to first token for a 500-token prompt from ~1.2 s to
~0.6 s and lift 8 concurrent requests from ~130 to ~190 tokens/s. But a build can carry AMX code that
dies with SIGILL at its first tile load, which kills the whole process rather than raising: GCC 12
drops the stores that fill the tile configuration before `ldtilecfg` (dead-store elimination does not
see that the instruction reads them), so the tiles are never configured. `make install` builds with
`-fno-dse` for that reason; a wheel built elsewhere (pip's cache, an older install) may not be. So the
first process on an AMX machine runs a short prefill and decode with the AMX kernels in a child
process, and the verdict is cached per llama.cpp build (path, size and time of `libggml-cpu`); a
crash in the child only turns the AMX kernels off (one warning), never the caller.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from prunekit.decoding.backends.embedded import default_cache_dir

__all__ = ["amx_kernels_work", "cpu_has_amx"]

log = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 120
_PROBE_PROMPT_TOKENS = 64  # more than one row: the tile kernels run only for matmuls with M > 1


def cpu_has_amx() -> bool:
    """True when the CPU advertises Intel AMX tiles (where llama.cpp picks its AMX kernels)."""
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def _build_fingerprint() -> str:
    """Identifies the installed llama.cpp CPU backend: a rebuild gets a new verdict."""
    import llama_cpp

    libs = {lib.resolve() for lib in (Path(llama_cpp.__file__).parent / "lib").glob("libggml-cpu*")}
    return json.dumps(sorted((str(lib), lib.stat().st_size, lib.stat().st_mtime_ns) for lib in libs if lib.is_file()))


def amx_kernels_work(gguf_path: Path, cache_dir: Path | None = None) -> bool:
    """Whether llama.cpp's AMX kernels run `gguf_path` here without crashing (probed once per build and model)."""
    verdicts_file = (cache_dir or default_cache_dir()) / "llamacpp-amx.json"
    key = f"{_build_fingerprint()}|{gguf_path.name}"
    try:
        verdicts = json.loads(verdicts_file.read_text())
    except (OSError, ValueError):
        verdicts = {}
    if key in verdicts:
        return bool(verdicts[key])
    try:
        probe = subprocess.run(
            [sys.executable, "-m", __name__, str(gguf_path)],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
        )
        works = probe.returncode == 0
        if probe.returncode < 0:
            detail = f"killed by {signal.Signals(-probe.returncode).name}"
        else:
            detail = f"exit status {probe.returncode}: {probe.stderr.strip().splitlines()[-1:]}"
    except subprocess.TimeoutExpired:
        works, detail = False, f"no answer in {_PROBE_TIMEOUT_S} s"
    if not works:
        log.warning(
            "llama.cpp's AMX kernels failed a probe (%s); running its AVX kernels instead. To rebuild it with them "
            "working: CMAKE_ARGS='-DCMAKE_C_FLAGS=-fno-dse -DCMAKE_CXX_FLAGS=-fno-dse' pip install "
            "--force-reinstall --no-cache-dir --no-deps llama-cpp-python==0.3.36",
            detail,
        )
    verdicts[key] = works
    verdicts_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = verdicts_file.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(verdicts, indent=1))
    tmp.replace(verdicts_file)
    return works


def _probe(gguf_path: str) -> None:
    """Prefill a prompt and decode one token with the AMX kernels on; a faulty build dies here with SIGILL."""
    import llama_cpp as llama
    import numpy as np

    llama.llama_backend_init()
    mparams = llama.llama_model_default_params()
    mparams.use_extra_bufts = True
    model = llama.llama_model_load_from_file(gguf_path.encode(), mparams)
    if not model:
        sys.exit(f"llama.cpp could not load {gguf_path}")
    cparams = llama.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = 2 * _PROBE_PROMPT_TOKENS
    cparams.n_threads = cparams.n_threads_batch = os.cpu_count() or 1
    ctx = llama.llama_init_from_model(model, cparams)
    n_vocab = llama.llama_vocab_n_tokens(llama.llama_model_get_vocab(model))
    batch = llama.llama_batch_init(_PROBE_PROMPT_TOKENS, 0, 1)
    for step_tokens, start in ((_PROBE_PROMPT_TOKENS, 0), (1, _PROBE_PROMPT_TOKENS)):
        batch.n_tokens = step_tokens
        for i in range(step_tokens):
            batch.token[i] = 100 + (start + i) % 1000
            batch.pos[i] = start + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i == step_tokens - 1
        if llama.llama_decode(ctx, batch) != 0:
            sys.exit("llama_decode failed")
        logits = np.ctypeslib.as_array(llama.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        if not np.isfinite(logits).all():
            sys.exit("the AMX kernels gave non-finite logits")


if __name__ == "__main__":
    _probe(sys.argv[1])
