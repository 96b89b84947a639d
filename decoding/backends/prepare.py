"""`python -m prunekit.decoding.backends.prepare`: make the embedded model ready offline (run by `make install`).

Converts the shipped GGUF into the transformers copy (training path) and, when llama.cpp is
built, into the fast path's weights. Both land in the user cache and are skipped when present.
"""

from __future__ import annotations

import logging
import time

from rich.console import Console

from prunekit.decoding.backends.embedded import default_cache_dir, embedded_hf_dir

__all__ = ["prepare"]


def prepare() -> None:
    console = Console(stderr=True)
    cache = default_cache_dir()
    started = time.perf_counter()
    with console.status("preparing the embedded model (transformers copy; ~30 s the first time)"):
        embedded_hf_dir(cache)
    try:
        from prunekit.decoding.backends.llamacpp import prepare_fast_weights
    except ImportError as exc:
        console.print(f"[yellow]warning[/]: llama.cpp fast path unavailable ({exc}); using transformers")
    else:
        with console.status("preparing the llama.cpp weights"):
            prepare_fast_weights(cache)
    console.print(f"embedded model ready in {cache} ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    prepare()
