"""How much of a conversation fits a model's context window: prompt token counts and the prompt budget.

The in-process backends count exactly (their chat template and tokenizer); for a server whose tokenizer is not
known here the count is an estimate with a wider margin. This is the LLM layer's knowledge of its backends, so the
probing of what a backend offers stays here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prunekit.decoding.protocol import ChatModel

__all__ = ["CHARS_PER_TOKEN", "FALLBACK_CONTEXT_TOKENS", "prompt_budget", "prompt_tokens"]

# Token counts without the model's tokenizer (an HTTP backend): about 4 characters a token for English text
# under the BPE vocabularies of current chat models (OpenAI's rule of thumb), plus the chat template's role
# markers around each message. Code and other scripts run denser, so the estimate keeps a wider margin.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
# Room left besides the answer's max_tokens: the generation prompt and rounding when the count is exact,
# plus an eighth of the window when it is an estimate.
MARGIN_TOKENS = 32
# The context window assumed for a backend that does not say its own (`context_length`): an
# OpenAI-compatible server's model is unknown here, and 8k tokens is what most current ones take at least.
FALLBACK_CONTEXT_TOKENS = 8192


def _exact_counter(model: ChatModel) -> Callable[[Sequence[Mapping[str, Any]]], int] | None:
    """The model's own count of a prompt (chat template included), when its backend exposes one."""
    encode = getattr(model, "encode_chat", None)  # the in-process backends (llama.cpp, transformers)
    return (lambda messages: len(encode(messages))) if callable(encode) else None


def prompt_tokens(model: ChatModel, messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens of `messages` for `model`: exact with its chat template when the backend has one, else
    its `tokenize` per message, else `CHARS_PER_TOKEN` characters a token; plus `TOKENS_PER_MESSAGE` each.

    >>> class Remote: name = "remote"
    >>> prompt_tokens(Remote(), [{"role": "user", "content": "x" * 40}])
    14
    """
    exact = _exact_counter(model)
    if exact is not None:
        return exact(messages)
    tokenize = getattr(model, "tokenize", None)

    def count(text: str) -> int:
        return len(tokenize(text)) if callable(tokenize) else -(-len(text) // CHARS_PER_TOKEN)

    return sum(count(str(m.get("content") or "")) + TOKENS_PER_MESSAGE for m in messages)


def prompt_budget(model: ChatModel, max_tokens: int) -> int:
    """Prompt tokens `model` can take with room for an answer of `max_tokens` (and a margin)."""
    context = int(getattr(model, "context_length", 0) or FALLBACK_CONTEXT_TOKENS)
    margin = MARGIN_TOKENS if _exact_counter(model) is not None else MARGIN_TOKENS + context // 8
    return context - max_tokens - margin
