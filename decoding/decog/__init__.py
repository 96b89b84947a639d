"""Deco-G format-guided decoding: an HMM distilled from the LLM steers generation into a format, with lookahead.

Deco-G (Deng, Kung, Peng 2025, "Decoupling Task-Solving and Output Formatting in LLM Generation",
arXiv 2510.03595) on top of Ctrl-G (Zhang et al. 2024, joshuacnf/Ctrl-G). Pipeline:

    format spec (formats.py, within the static limits of limits.py) -> char automaton -> UTF-8 byte automaton
        (automaton.py; for requests, in a deadline-bound child process: bounded.py)
        -> token DFA over the tokenizer's vocabulary (vocab.py, token_dfa.py)
    HMM (hmm.py) + token DFA -> backward tables (backward.py), cached per (format, HMM)
    -> DecoGProcessor / HardMaskProcessor (guidance.py): transformers-style logits processors
    outlines-core's mask of the same format (outlines_ref.py): the external reference of the evaluation
    training, never imported at serve time: the HMM distilled from the LLM (distill.py, on the task-only prompts
        of prompts.py) and its guidance weight chosen per task on training items (guidance_weights.py)
    serving: a request's format -> processor over the backend's vocabulary (guided.py, the shipped HMM in weights/)

The names below load on first use (PEP 562): the format compiler's child processes import `formats.py` and
`automaton.py` without torch (`hmm.py`, `backward.py`, `guidance.py`), which would add 2 s and ~300 MB to each.

With a toy vocabulary (a real one: `TokenVocabulary.from_tokenizer(tokenizer)`) and a random HMM (the embedded
model's: `HMM.load(decoding.decog.guided.DEFAULT_HMM_DIR)`):

>>> import torch
>>> from prunekit.decoding import GenerationParams
>>> from prunekit.decoding.decog import HMM, DecoGProcessor, TokenVocabulary, compile_token_dfa
>>> vocab = TokenVocabulary.from_strings([None, "The", " answer", " is", " ", "4", "2", "x"], eos_token_ids=[0])
>>> dfa = compile_token_dfa("pivot:<free>The answer is <int>", vocab)
>>> hmm = HMM.random(hidden_size=4, vocab_size=vocab.size, seed=0)
>>> guide = DecoGProcessor(hmm, dfa, max_new_tokens=8, prune_mass=0.9)
>>> params = GenerationParams(max_tokens=8, logits_processors=(guide,))  # for a local backend's chat()
>>> scores = guide(torch.tensor([[7]]), torch.zeros(1, vocab.size))  # (1, T) ids, (1, V) logits -> log-probs
>>> torch.isinf(scores[0]).tolist()  # EOS cannot come before "The answer is <int>"
[True, False, False, False, False, False, False, False]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prunekit.decoding.decog.backward import BackwardTables, get_backward_tables
    from prunekit.decoding.decog.bounded import CompileBudget, compile_token_dfa_bounded
    from prunekit.decoding.decog.errors import (
        EmptyFormatError,
        FormatBudgetError,
        FormatCompileTimeoutError,
        FormatSpecError,
        FormatTooLargeError,
        GuidanceError,
        HMMFileError,
        InvalidRegexError,
        UnsatisfiableFormatError,
        VocabularyMismatchError,
    )
    from prunekit.decoding.decog.formats import (
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
    from prunekit.decoding.decog.guidance import DecoGProcessor, HardMaskProcessor
    from prunekit.decoding.decog.hmm import HMM, HMMConfig
    from prunekit.decoding.decog.token_dfa import TokenDFA, build_token_dfa, compile_token_dfa
    from prunekit.decoding.decog.vocab import TokenVocabulary

_SOURCES = {
    "backward": ("BackwardTables", "get_backward_tables"),
    "bounded": ("CompileBudget", "compile_token_dfa_bounded"),
    "errors": (
        "EmptyFormatError",
        "FormatBudgetError",
        "FormatCompileTimeoutError",
        "FormatSpecError",
        "FormatTooLargeError",
        "GuidanceError",
        "HMMFileError",
        "InvalidRegexError",
        "UnsatisfiableFormatError",
        "VocabularyMismatchError",
    ),
    "formats": (
        "Choice",
        "Format",
        "JsonObject",
        "OneOf",
        "Pivot",
        "Regex",
        "Sequence",
        "Wildcard",
        "compile_format",
        "parse_format",
    ),
    "guidance": ("DecoGProcessor", "HardMaskProcessor"),
    "hmm": ("HMM", "HMMConfig"),
    "token_dfa": ("TokenDFA", "build_token_dfa", "compile_token_dfa"),
    "vocab": ("TokenVocabulary",),
}
_MODULE_OF = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = [
    "HMM",
    "BackwardTables",
    "Choice",
    "CompileBudget",
    "DecoGProcessor",
    "EmptyFormatError",
    "Format",
    "FormatBudgetError",
    "FormatCompileTimeoutError",
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
    "compile_token_dfa_bounded",
    "get_backward_tables",
    "parse_format",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
