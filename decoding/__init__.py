"""decoding: the only place that talks to an LLM.

Backends (`decoding.backends`) behind one `ChatModel` protocol: `LocalModel` (transformers, in-process),
`decoding.backends.llamacpp.LlamaCppModel` (the embedded model's fast path; its own import, since llama-cpp-python is
an optional build) and `OpenAIModel` (any OpenAI-compatible server); `decoding.backends.loader` loads the embedded
or a local model. The two in-process ones are also `LocalBackend`s (tokens, EOS, vocabulary, log-probs, context
window): ask `as_local(model)` (None for a served model) rather than probing a model for members.
Deco-G's format guidance lives in `decoding.decog`. Heavy backends are imported on first use, so `import decoding`
stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prunekit.decoding.backends.openai_http import OpenAIModel
from prunekit.decoding.cancel import CancelToken, RequestCancelledError, cancellable, check_cancelled
from prunekit.decoding.errors import (
    BackendConnectionError,
    BackendError,
    BackendHTTPError,
    BackendProtocolError,
    BackendTimeoutError,
    EmbeddedModelMissingError,
    InvalidRequestError,
    LeakageError,
    NotFoundError,
    PrunekitError,
)
from prunekit.decoding.protocol import ChatModel, LocalBackend, PromptEncoder, as_local, model_name, require_local
from prunekit.decoding.types import ChatChunk, ChatResult, GenerationParams, Message, TokenLogprob, Usage

if TYPE_CHECKING:
    from prunekit.decoding.backends.local import LocalModel

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
    "LeakageError",
    "LocalBackend",
    "LocalModel",
    "Message",
    "NotFoundError",
    "OpenAIModel",
    "PromptEncoder",
    "PrunekitError",
    "RequestCancelledError",
    "TokenLogprob",
    "Usage",
    "as_local",
    "cancellable",
    "check_cancelled",
    "model_name",
    "require_local",
]

_LAZY = {"LocalModel": "prunekit.decoding.backends.local"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
