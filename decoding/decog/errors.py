"""Exceptions of Deco-G guidance. A bad format or budget is the caller's input: it maps to HTTP 400.

Every format error subclasses `decoding.errors.InvalidRequestError` and says what to change.
"""

from __future__ import annotations

from prunekit.decoding.errors import InvalidRequestError, PrunekitError

__all__ = [
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
]


class FormatSpecError(InvalidRequestError):
    """The format spec is wrong (base of every format error)."""


class EmptyFormatError(FormatSpecError):
    """The spec is empty, or a part of it (a pivot, a choice option, a JSON object) is empty."""


class InvalidRegexError(FormatSpecError):
    """A regular expression in the spec does not parse, or uses a feature a finite automaton cannot express."""


class UnsatisfiableFormatError(FormatSpecError):
    """No string satisfies the format, or none can be written with the tokenizer's vocabulary."""


class FormatBudgetError(FormatSpecError):
    """The format cannot be completed within the token budget (`max_new_tokens`, `min_new_tokens`)."""


class FormatTooLargeError(FormatSpecError):
    """The format's automaton has too many states for dense token tables (e.g. a large `<free:N>`)."""


class FormatCompileTimeoutError(FormatTooLargeError):
    """Building the format's automaton took longer than the compile deadline (the service's bounded compile)."""


class VocabularyMismatchError(PrunekitError, ValueError):
    """The HMM, the token DFA and the LLM do not share one vocabulary."""


class HMMFileError(PrunekitError, ValueError):
    """An HMM file is missing, or its config and tensors disagree."""


class GuidanceError(PrunekitError, RuntimeError):
    """A guidance processor was used against its contract (batch > 1, a token outside the format, reuse)."""
