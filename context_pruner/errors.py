"""Errors of the context pruner: each names the bad input and says what to change.

All subclass `decoding.errors.InvalidRequestError`, so the service maps them to HTTP 400.
"""

from __future__ import annotations

from prunekit.decoding.errors import InvalidRequestError, LeakageError

__all__ = [
    "BatchTooLargeError",
    "EvaluationSplitError",
    "InvalidContextError",
    "InvalidOptionError",
    "InvalidQuestionError",
    "PrunerInputError",
    "PrunerWeightsError",
    "ShapeMismatchError",
    "TrainingDataError",
]


class PrunerInputError(InvalidRequestError):
    """Base of every input error the context pruner raises.

    `argument` names the input at fault as the raising function calls it (`calibration_file`, `data_root`,
    `weights`, `config.data`, `config.teacher_weights`, ...), so a front end can point at its own option for it;
    None where the message alone says what to change.
    """

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


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


class PrunerWeightsError(PrunerInputError):
    """A folder given as pruner weights does not hold them (`config.json` + `model.safetensors`)."""


class TrainingDataError(PrunerInputError):
    """A file to train or calibrate on, or the data folder, does not exist."""


class EvaluationSplitError(PrunerInputError, LeakageError):
    """A file to train or calibrate on is an evaluation split (dev, test, valid): the evaluation would leak."""
