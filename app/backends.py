"""Build the LLM backend the settings ask for (shared by the service and the CLI)."""

from __future__ import annotations

from prunekit.app.settings import Settings
from prunekit.decoding import ChatModel, InvalidRequestError

__all__ = ["build_chat_model", "chat_repetition_penalty"]


def chat_repetition_penalty(settings: Settings, requested: float | None, format: str | None) -> float | None:
    """The repetition penalty a chat answer (the service's chat completions, `prunekit chat`) runs with.

    The request's own when it sets one (any backend: vLLM takes the field). Otherwise the loop guard
    (`PRUNEKIT_REPETITION_PENALTY`) on the in-process backends, whose small greedy model loops without it; but not
    under a `format`, whose JSON keys, quotes and fixed text repeat by design and whose automaton already bounds the
    answer; and not for a remote server (None: nothing is sent, the server's own default applies).

    >>> chat_repetition_penalty(Settings(repetition_penalty=1.2), None, None)
    1.2
    >>> chat_repetition_penalty(Settings(repetition_penalty=1.2), None, 'json:{"a": "string"}') is None
    True
    """
    if requested is not None:
        return requested
    if format is not None or settings.backend == "openai":
        return None
    return settings.repetition_penalty


def build_chat_model(settings: Settings) -> ChatModel:
    """The LLM backend the settings ask for."""
    if settings.backend == "openai":
        from prunekit.decoding import OpenAIModel

        if not settings.base_url:
            raise InvalidRequestError("PRUNEKIT_BASE_URL must be set when PRUNEKIT_BACKEND=openai")
        key = settings.backend_api_key.get_secret_value() if settings.backend_api_key else None
        return OpenAIModel(
            settings.base_url,
            model=settings.backend_model or "default",
            api_key=key,
            read_timeout=settings.backend_timeout_s,
        )
    path = settings.model_path
    if path is not None:
        is_gguf = path.suffix.lower() == ".gguf"
        if settings.backend == "hf" and is_gguf:
            raise InvalidRequestError(
                f"PRUNEKIT_MODEL_PATH={path} is a GGUF file: it runs with PRUNEKIT_BACKEND=embedded (llama.cpp); "
                "backend hf takes a transformers model folder"
            )
        if settings.backend == "embedded" and not is_gguf:
            raise InvalidRequestError(
                f"PRUNEKIT_MODEL_PATH={path}: backend embedded runs a GGUF file; a transformers model folder needs "
                "PRUNEKIT_BACKEND=hf"
            )
        from prunekit.decoding.backends.loader import load_local_model

        return load_local_model(path, hmm_dir=settings.hmm_dir)
    from prunekit.decoding.backends.loader import load_embedded

    return load_embedded("hf" if settings.backend == "hf" else "auto", settings.cache_dir, hmm_dir=settings.hmm_dir)


def build_sql_model(settings: Settings, chat_model: ChatModel | None = None, adapter: str | None = None) -> ChatModel:
    """The model the SQL agent runs: the embedded model with the SQL adapter merged in (`adapter`, else
    `settings.sql_adapter`: shipped, none or a folder); a model of one's own (`PRUNEKIT_MODEL_PATH`, backend openai)
    or adapter none reuses `chat_model` (built when not given)."""
    from prunekit.nl2sql.adapter import resolve_adapter

    folder = resolve_adapter(adapter if adapter is not None else settings.sql_adapter)
    if folder is None or settings.backend == "openai" or settings.model_path is not None:
        return chat_model if chat_model is not None else build_chat_model(settings)
    from prunekit.decoding.backends.loader import load_embedded

    backend = "hf" if settings.backend == "hf" else "auto"
    return load_embedded(backend, settings.cache_dir, hmm_dir=settings.hmm_dir, adapter=folder)
