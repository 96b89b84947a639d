"""Scripted fake ChatModels for the graph-pruning tests: they record every call."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prunekit.decoding.types import ChatResult, GenerationParams, Usage


class RecordingModel:
    """Answers with `reply(system, user)`; records (system, user, params) of every call, thread-safely."""

    name = "fake-recording"

    def __init__(self, reply: Callable[[str, str], str] | str = "The answer is 7", prompt_tokens: int = 10) -> None:
        self.reply = reply if callable(reply) else (lambda system, user, _r=reply: _r)
        self.prompt_tokens = prompt_tokens
        self.calls: list[tuple[str, str, GenerationParams | None]] = []
        self._lock = threading.Lock()

    def chat(self, messages: Sequence[Mapping[str, Any]], params: GenerationParams | None = None) -> ChatResult:
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        user = next((m["content"] for m in messages if m["role"] == "user"), "")
        with self._lock:
            self.calls.append((system, user, params))
        text = self.reply(system, user)
        return ChatResult(
            text=text, finish_reason="stop", usage=Usage(self.prompt_tokens, len(text.split())), model=self.name
        )

    def stream(self, messages, params=None):  # pragma: no cover - not used by graph_pruning
        raise NotImplementedError

    def roles_called(self) -> list[str]:
        """The system prompts of all calls (each agent's system prompt starts with its role prompt)."""
        return [system for system, _, _ in self.calls]
