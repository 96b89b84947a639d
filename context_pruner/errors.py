"""Errors of the context pruner: each names the bad input and says what to change.

All subclass `decoding.errors.InvalidRequestError`, so the service maps them to HTTP 400.
"""

from __future__ import annotations

from prunekit.decoding.errors import InvalidRequestError

__all__ = [
    "BatchTooLargeError",
    "InvalidContextError",
    "InvalidOptionError",
    "InvalidQuestionError",
    "PrunerInputError",
    "ShapeMismatchError",
]


class PrunerInputError(InvalidRequestError):
    """Base of every input error the context pruner raises."""


class InvalidQuestionError(PrunerInputError):
    """The question is missing, empty, not a string, or too long."""


class InvalidContextError(PrunerInputError):
    """A context (or a title) is not a string, or is too long."""


class ShapeMismatchError(PrunerInputError):
    """Questions, contexts and titles do not line up (one list of contexts per question, one title per context)."""


class BatchTooLargeError(PrunerInputError):
    """More contexts in one call than the pruner accepts."""


class InvalidOptionError(PrunerInputError):
    """An option (threshold, top_k, batch_size) is out of range."""
