"""outlines-core's hard mask over the regex of a JSON Schema (`outlines_core.json_schema.build_regex_from_schema`):
the `OutlinesMaskProcessor` of `decoding.decog.outlines_ref`, fed a schema's regex instead of a Deco-G format."""

from __future__ import annotations

import torch
from outlines_core import Guide

from prunekit.decoding.decog.outlines_ref import OutlinesMaskProcessor, outlines_index
from prunekit.decoding.decog.vocab import TokenVocabulary

__all__ = ["SchemaRegexMask"]


class SchemaRegexMask(OutlinesMaskProcessor):
    """`OutlinesMaskProcessor` over a regex from `build_regex_from_schema` rather than a Deco-G format (whose
    static limits a schema's regex of many kB would exceed). Same masking, same contract: one per request."""

    def __init__(self, regex: str, vocab: TokenVocabulary) -> None:
        # The parent's own fields, set as its __init__ does, minus the format-to-regex step.
        self.regex, self.exact = regex, True
        self._guide = Guide(outlines_index(regex, vocab))
        self._vocab_size = vocab.size
        self._eos = list(vocab.eos_token_ids)
        self._words = torch.zeros((vocab.size + 31) // 32, dtype=torch.int32)
        self._prompt_len: int | None = None
        self._generated = 0
        self._finished = False
