"""Exceptions of the LLM layer. Each says what went wrong and, where it can, what to change."""

from __future__ import annotations

__all__ = [
    "BackendConnectionError",
    "BackendError",
    "BackendHTTPError",
    "BackendProtocolError",
    "BackendTimeoutError",
    "EmbeddedModelMissingError",
    "InvalidRequestError",
    "LeakageError",
    "NotFoundError",
    "PrunekitError",
    "ServiceBusyError",
]


class PrunekitError(Exception):
    """Base of every error prunekit raises on purpose."""


class InvalidRequestError(PrunekitError, ValueError):
    """The caller's input is wrong (maps to HTTP 400)."""


class LeakageError(InvalidRequestError):
    """Training (or tuning a setting) would read evaluation items: the evaluation's results would no longer be
    held out. Train and tune on training splits only."""


class NotFoundError(InvalidRequestError):
    """The caller named something that does not exist: a collection, a database, a thread (maps to HTTP 404)."""


class ServiceBusyError(PrunekitError):
    """Every place for this kind of work is taken; the request is fine and may be sent again (maps to HTTP 503)."""


class EmbeddedModelMissingError(PrunekitError):
    """The package that carries the embedded model weights is not installed."""


class BackendError(PrunekitError):
    """The LLM backend failed (maps to HTTP 502)."""


class BackendConnectionError(BackendError):
    """The backend could not be reached."""


class BackendTimeoutError(BackendError):
    """The backend did not answer in time (maps to HTTP 504)."""


class BackendHTTPError(BackendError):
    """The backend answered with an HTTP error status."""

    def __init__(self, status_code: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"backend answered HTTP {status_code}: {message}")
        self.status_code = status_code
        self.retry_after = retry_after  # seconds, from a Retry-After header


class BackendProtocolError(BackendError):
    """The backend's answer could not be understood (bad JSON, malformed SSE)."""
