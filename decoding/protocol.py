"""The one interface through which prunekit talks to any LLM."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from prunekit.decoding.types import ChatChunk, ChatResult, GenerationParams

__all__ = ["ChatModel"]


@runtime_checkable
class ChatModel(Protocol):
    """A chat LLM: the embedded model, a local transformers model or an OpenAI-compatible server.

    Implementations are safe to call from several threads at once.
    """

    name: str

    def chat(self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None = None) -> ChatResult:
        """Answer a conversation in one piece."""
        ...

    def stream(
        self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None = None
    ) -> Iterator[ChatChunk]:
        """Answer a conversation as a stream of text deltas; the last chunk has `finish_reason` and `usage`."""
        ...
