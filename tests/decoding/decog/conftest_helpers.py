"""Loading the embedded SmolLM2 tokenizer for tests (skips when the model package is absent, fails under CI)."""

from __future__ import annotations

import functools

from tests.conftest import skip_or_fail


@functools.lru_cache(maxsize=1)
def _load():
    from transformers import AutoTokenizer

    from prunekit.decoding.backends.embedded import embedded_hf_dir

    return AutoTokenizer.from_pretrained(embedded_hf_dir())


def smollm2_tokenizer():
    from prunekit.decoding.errors import EmbeddedModelMissingError

    try:
        return _load()
    except EmbeddedModelMissingError as e:
        skip_or_fail(str(e))
