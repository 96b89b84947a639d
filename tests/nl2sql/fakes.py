"""Scripted stand-ins for the LLM and the encoder, shared by the nl2sql tests."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import numpy as np

from prunekit.decoding.types import ChatChunk, ChatResult, Usage


class ScriptedModel:
    """A deterministic `ChatModel`: `respond(messages, params) -> text`; records every call."""

    name = "scripted"

    def __init__(self, respond: Callable[[list[dict], object], str]) -> None:
        self.respond = respond
        self.calls: list[tuple[list[dict], object]] = []
        self._lock = threading.Lock()

    def chat(self, messages, params=None) -> ChatResult:
        with self._lock:
            self.calls.append((list(messages), params))
        text = self.respond(list(messages), params)
        prompt = sum(len(m["content"].split()) for m in messages)
        return ChatResult(text, "stop", Usage(prompt, len(text.split())), self.name)

    def stream(self, messages, params=None):
        result = self.chat(messages, params)
        yield ChatChunk(result.text, "stop", result.usage)


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A deterministic normalised bag-of-words embedder (each word hashes to one of 128 dimensions)."""
    out = np.zeros((len(texts), 128), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().replace("_", " ").split():
            word = word.strip("?,.'\"()").rstrip("s")
            if word:
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 128] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-9)


class CountingEmbedder:
    """`bag_of_words` that counts the texts it embedded (to prove a cache was used)."""

    path = "bag-of-words"

    def __init__(self) -> None:
        self.n_texts = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.n_texts += len(texts)
        return bag_of_words(texts)
