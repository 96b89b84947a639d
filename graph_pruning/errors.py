"""Exceptions of the graph-pruning package (AGP, arXiv 2506.02951).

Each subclasses `decoding.errors.InvalidRequestError`, so the service maps them to HTTP 400, and says what to change.
"""

from __future__ import annotations

from prunekit.decoding.errors import InvalidRequestError, LeakageError  # LeakageError: shared by every core

__all__ = [
    "InvalidRecordError",
    "InvalidTaskError",
    "InvalidTopologyError",
    "LeakageError",
    "PrunerNotFoundError",
    "SandboxUnavailableError",
    "UnknownBenchmarkError",
    "UnknownDomainError",
]


class UnknownDomainError(InvalidRequestError):
    """The domain has no agent pool (choose one of `math`, `general`, `code`)."""


class InvalidTopologyError(InvalidRequestError):
    """A topology names agents the pool does not have, has no agent, or is not acyclic."""


class InvalidTaskError(InvalidRequestError):
    """A task is empty or lacks what its answer format needs (a paragraph for spans, tests for code)."""


class InvalidRecordError(InvalidRequestError):
    """A stage-I record does not fit the pool (wrong matrix shape, mask values other than 0/1)."""


class UnknownBenchmarkError(InvalidRequestError):
    """The benchmark name is not one of the supported ones."""


class PrunerNotFoundError(InvalidRequestError):
    """A folder given as a trained pruner does not hold one (`config.json` + `pruner.safetensors`)."""


class SandboxUnavailableError(InvalidRequestError):
    """Code execution is on but the OS sandbox cannot run: bubblewrap (`bwrap`) is missing or cannot create its
    namespaces here. Nothing is ever run outside the sandbox instead; install bubblewrap or turn code execution off."""
