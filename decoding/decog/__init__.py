"""Deco-G format-guided decoding: an HMM distilled from the LLM steers generation into a format, with lookahead.

Deco-G (Deng, Kung, Peng 2025, "Decoupling Task-Solving and Output Formatting in LLM Generation",
arXiv 2510.03595) on top of Ctrl-G (Zhang et al. 2024, joshuacnf/Ctrl-G). Pipeline:

    format spec (formats.py) -> char automaton -> UTF-8 byte automaton (automaton.py)
        -> token DFA over the tokenizer's vocabulary (vocab.py, token_dfa.py)
    HMM (hmm.py) + token DFA -> backward tables (backward.py), cached per (format, HMM)
    -> DecoGProcessor / HardMaskProcessor (guidance.py): transformers-style logits processors
    outlines-core's mask of the same format (outlines_ref.py): the external reference of the evaluation

>>> vocab = TokenVocabulary.from_tokenizer(tokenizer)  # doctest: +SKIP
>>> dfa = compile_token_dfa("pivot:<free>The answer is <int>", vocab)  # doctest: +SKIP
>>> guide = DecoGProcessor(hmm, dfa, max_new_tokens=128, prune_mass=0.9)  # doctest: +SKIP
>>> params = GenerationParams(max_tokens=128, logits_processors=(guide,))  # doctest: +SKIP
"""

from __future__ import annotations

from decoding.decog.backward import BackwardTables, get_backward_tables
from decoding.decog.errors import (
    EmptyFormatError,
    FormatBudgetError,
    FormatSpecError,
    FormatTooLargeError,
    GuidanceError,
    HMMFileError,
    InvalidRegexError,
    UnsatisfiableFormatError,
    VocabularyMismatchError,
)
from decoding.decog.formats import (
    Choice,
    Format,
    JsonObject,
    OneOf,
    Pivot,
    Regex,
    Sequence,
    Wildcard,
    compile_format,
    parse_format,
)
from decoding.decog.guidance import DecoGProcessor, HardMaskProcessor
from decoding.decog.hmm import HMM, HMMConfig
from decoding.decog.token_dfa import TokenDFA, build_token_dfa, compile_token_dfa
from decoding.decog.vocab import TokenVocabulary

__all__ = [
    "HMM",
    "BackwardTables",
    "Choice",
    "DecoGProcessor",
    "EmptyFormatError",
    "Format",
    "FormatBudgetError",
    "FormatSpecError",
    "FormatTooLargeError",
    "GuidanceError",
    "HMMConfig",
    "HMMFileError",
    "HardMaskProcessor",
    "InvalidRegexError",
    "JsonObject",
    "OneOf",
    "Pivot",
    "Regex",
    "Sequence",
    "TokenDFA",
    "TokenVocabulary",
    "UnsatisfiableFormatError",
    "VocabularyMismatchError",
    "Wildcard",
    "build_token_dfa",
    "compile_format",
    "compile_token_dfa",
    "get_backward_tables",
    "parse_format",
]
