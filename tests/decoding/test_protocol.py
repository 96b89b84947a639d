"""What a local backend is (`LocalBackend`), and the questions callers ask instead of probing a model."""

from __future__ import annotations

import pytest

from prunekit.decoding import (
    ChatModel,
    InvalidRequestError,
    LocalBackend,
    PromptEncoder,
    as_local,
    model_name,
    require_local,
)


class Served:
    """Chat and stream only, as an OpenAI-compatible server."""

    name = "remote"

    def chat(self, messages, params=None): ...

    def stream(self, messages, params=None): ...


class Local(Served):
    """Every member of a local backend."""

    name = "local"
    context_length, eos_token_id, hmm_dir, reused_prompt_tokens = 64, 0, None, None

    def encode_chat(self, messages): ...
    def tokenize(self, text, *, special=True): ...
    def detokenize(self, ids): ...
    def vocabulary(self): ...
    def format_guide(self): ...
    def next_token_logprobs(self, input_ids): ...
    def sequence_logprobs(self, prompt_ids, completion_ids): ...
    def close(self): ...


class Counter:
    """Counts its prompts and nothing else (a test's reader with a window)."""

    context_length = 60

    def encode_chat(self, messages): ...


def test_a_local_backend_has_every_member_and_a_served_model_is_none() -> None:
    local = Local()
    assert as_local(local) is local and isinstance(local, ChatModel) and isinstance(local, PromptEncoder)
    assert as_local(Served()) is None and isinstance(Served(), ChatModel)
    assert as_local(Counter()) is None and isinstance(Counter(), PromptEncoder)
    assert not isinstance(Served(), LocalBackend) and not isinstance(Served(), PromptEncoder)


def test_require_local_names_what_needs_it() -> None:
    local = Local()
    assert require_local(local, "scoring") is local
    with pytest.raises(InvalidRequestError, match=r"scoring needs an in-process model.*'remote'"):
        require_local(Served(), "scoring")


def test_model_name_falls_back_to_the_class() -> None:
    assert model_name(Served()) == "remote"
    assert model_name(Counter()) == "Counter"
