"""The interfaces through which prunekit talks to an LLM.

- `ChatModel`: every backend (the embedded model, a transformers folder, an OpenAI-compatible server).
- `LocalBackend`: what the in-process backends (`LocalModel`, `LlamaCppModel`) offer besides: tokens, the chat
  template, EOS, the vocabulary, log-probabilities, the context window. Deco-G's guidance, distillation and
  evaluation need it; a served model offers none of it.
- `PromptEncoder`: the part of it that counts a prompt exactly (chat template + window).

Callers ask once, `as_local(model)` (None for a served model), instead of probing a model for single members;
`model_name(model)` is the name reports record.

>>> class Served:  # chat and stream only, as an OpenAI-compatible server
...     name = "remote"
...     def chat(self, messages, params=None): ...
...     def stream(self, messages, params=None): ...
>>> isinstance(Served(), ChatModel), as_local(Served()), model_name(Served()), model_name(object())
(True, None, 'remote', 'object')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from prunekit.decoding.errors import InvalidRequestError
from prunekit.decoding.types import ChatChunk, ChatResult, GenerationParams

if TYPE_CHECKING:
    import torch

    from prunekit.decoding.decog.guided import FormatGuide
    from prunekit.decoding.decog.vocab import TokenVocabulary

__all__ = ["ChatModel", "LocalBackend", "PromptEncoder", "as_local", "model_name", "require_local"]


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


@runtime_checkable
class PromptEncoder(Protocol):
    """A model that counts its own prompts: its chat template in tokens, and the window they must fit."""

    context_length: int  # the longest prompt + answer one request may have

    def encode_chat(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Token ids of the conversation in the model's chat template, ready for the answer."""
        ...


@runtime_checkable
class LocalBackend(ChatModel, PromptEncoder, Protocol):
    """An in-process chat model with token-level access: `LocalModel` (transformers) and
    `decoding.backends.llamacpp.LlamaCppModel` (llama.cpp). `chat` and `stream` run `params.logits_processors`
    at every step, which is how Deco-G's guidance reaches the model.
    """

    eos_token_id: int | None  # the token that ends a reply (HMM distillation reserves a state for it)
    hmm_dir: Path | None  # Deco-G's HMM for this model's format guidance (None: the shipped one)
    reused_prompt_tokens: int | None  # prompt tokens taken from a prompt cache so far; None: the backend has none

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Token ids of `text` (no BOS); `special`: text such as `<|im_end|>` becomes its special token."""
        ...

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of `ids`, special tokens left out."""
        ...

    def vocabulary(self) -> TokenVocabulary:
        """The vocabulary formats compile against (bytes of every token; its `eos_token_ids`: every EOS)."""
        ...

    def format_guide(self) -> FormatGuide:
        """Format guidance over this model's vocabulary (what `GenerationParams.format` runs through)."""
        ...

    def next_token_logprobs(self, input_ids: Sequence[int]) -> torch.Tensor:
        """Log-probabilities `(V,)` of the token that follows `input_ids`."""
        ...

    def sequence_logprobs(self, prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> list[float]:
        """Log-probability of each completion token given the prompt and the tokens before it."""
        ...

    def close(self) -> None:
        """Free what the backend holds (threads, native memory) now rather than at exit."""
        ...


def as_local(model: object) -> LocalBackend | None:
    """`model` as an in-process backend, or None when it is not one (a served model)."""
    return model if isinstance(model, LocalBackend) else None


def require_local(model: object, purpose: str) -> LocalBackend:
    """`model` as an in-process backend; `InvalidRequestError` naming `purpose` when it is not one."""
    local = as_local(model)
    if local is None:
        raise InvalidRequestError(
            f"{purpose} needs an in-process model (llama.cpp or transformers) with token-level access; "
            f"{model_name(model)!r} is not one"
        )
    return local


def model_name(model: object) -> str:
    """The name a report records for `model`: its `name`, else its class name (a test's scripted model)."""
    return getattr(model, "name", type(model).__name__)
