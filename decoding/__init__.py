"""decoding: the only place that talks to an LLM.

Backends behind one `ChatModel` protocol: `LocalModel` (transformers, in-process),
`decoding.llamacpp.LlamaCppModel` (the embedded model's fast path; its own import, since llama-cpp-python is an
optional build) and `OpenAIModel` (any OpenAI-compatible server). Heavy backends are imported on first use, so
`import decoding` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from decoding.cancel import CancelToken, RequestCancelledError, cancellable, check_cancelled
from decoding.errors import (
    BackendConnectionError,
    BackendError,
    BackendHTTPError,
    BackendProtocolError,
    BackendTimeoutError,
    EmbeddedModelMissingError,
    InvalidRequestError,
    NotFoundError,
    PrunekitError,
)
from decoding.openai_http import OpenAIModel
from decoding.protocol import ChatModel
from decoding.types import ChatChunk, ChatResult, GenerationParams, Message, Usage

if TYPE_CHECKING:
    from decoding.local import LocalModel

__all__ = [
    "BackendConnectionError",
    "BackendError",
    "BackendHTTPError",
    "BackendProtocolError",
    "BackendTimeoutError",
    "CancelToken",
    "ChatChunk",
    "ChatModel",
    "ChatResult",
    "EmbeddedModelMissingError",
    "GenerationParams",
    "InvalidRequestError",
    "LocalModel",
    "Message",
    "NotFoundError",
    "OpenAIModel",
    "PrunekitError",
    "RequestCancelledError",
    "Usage",
    "cancellable",
    "check_cancelled",
]

_LAZY = {"LocalModel": "decoding.local"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'decoding' has no attribute {name!r}")
