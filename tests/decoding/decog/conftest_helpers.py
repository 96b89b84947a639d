"""Loading the embedded SmolLM2 tokenizer for tests (skips when the model package is absent, fails under CI)."""

from __future__ import annotations

import functools
import os

import pytest


@functools.lru_cache(maxsize=1)
def _load():
    from transformers import AutoTokenizer

    from decoding.embedded import embedded_hf_dir

    return AutoTokenizer.from_pretrained(embedded_hf_dir())


def smollm2_tokenizer():
    from decoding.errors import EmbeddedModelMissingError

    try:
        return _load()
    except EmbeddedModelMissingError as e:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(e))
        pytest.skip(str(e))
