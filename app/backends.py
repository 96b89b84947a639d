"""Build the LLM backend the settings ask for (shared by the service and the CLI)."""

from __future__ import annotations

from app.settings import Settings
from decoding import ChatModel, InvalidRequestError

__all__ = ["build_chat_model"]


def build_chat_model(settings: Settings) -> ChatModel:
    """The LLM backend the settings ask for."""
    if settings.backend == "openai":
        from decoding import OpenAIModel

        if not settings.base_url:
            raise InvalidRequestError("PRUNEKIT_BASE_URL must be set when PRUNEKIT_BACKEND=openai")
        key = settings.backend_api_key.get_secret_value() if settings.backend_api_key else None
        return OpenAIModel(
            settings.base_url,
            model=settings.backend_model or "default",
            api_key=key,
            read_timeout=settings.backend_timeout_s,
        )
    if settings.backend == "hf":
        from decoding.local import LocalModel

        return LocalModel(settings.model_path) if settings.model_path else LocalModel.embedded(settings.cache_dir)
    from decoding.loader import load_embedded

    return load_embedded("auto", settings.cache_dir)
