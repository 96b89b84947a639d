"""Service and CLI settings, read from `PRUNEKIT_*` environment variables (and a `.env` file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.databases import DatabaseRegistry, parse_database_list
from decoding.embedded import default_cache_dir

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Everything configurable, with the environment variable that sets it.

    backend: `embedded` (in-process llama.cpp: SmolLM2-135M, or the GGUF file in `model_path`; transformers when
    llama.cpp is not built), `hf` (a transformers model folder in `model_path`, or the embedded one), or `openai`
    (any OpenAI-compatible server at `base_url`). An in-process model other than the embedded one guides formats
    with Deco-G through the HMM distilled for it (`hmm_dir`, `prunekit train hmm --model`).
    """

    model_config = SettingsConfigDict(env_prefix="PRUNEKIT_", env_file=".env", extra="ignore")

    backend: Literal["embedded", "hf", "openai"] = "embedded"
    model_path: Path | None = None  # PRUNEKIT_MODEL_PATH: a GGUF file (embedded) or transformers folder (hf)
    hmm_dir: Path | None = None  # PRUNEKIT_HMM_DIR: Deco-G's HMM for that model (default: the embedded model's)
    base_url: str | None = None  # PRUNEKIT_BASE_URL: e.g. http://localhost:8001/v1 (backend=openai)
    backend_model: str | None = None  # PRUNEKIT_BACKEND_MODEL: the model name the server knows
    backend_api_key: SecretStr | None = None  # PRUNEKIT_BACKEND_API_KEY
    backend_timeout_s: float = 120.0

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_keys: Annotated[list[str], NoDecode] = []  # PRUNEKIT_API_KEYS=key1,key2 (empty: no auth)
    max_body_bytes: int = 1_000_000
    max_tokens_limit: int = 2048  # the largest max_tokens a client may ask for
    rate_limit_per_minute: int = 600  # per API key (or client address); 0 turns it off

    qdrant_url: str | None = None  # PRUNEKIT_QDRANT_URL: a Qdrant server (default: on disk in data_dir/qdrant)
    qdrant_api_key: SecretStr | None = None
    database_url: SecretStr | None = None  # PRUNEKIT_DATABASE_URL: PostgreSQL for threads (default: SQLite)
    data_dir: Path = Path("data")
    rag_collection: str = "default"  # PRUNEKIT_RAG_COLLECTION: used when a request names none
    sql_databases: str = ""  # PRUNEKIT_SQL_DATABASES=name=/path/a.sqlite,...: the allow-list for prunekit-sql
    sql_dir: Path | None = None  # PRUNEKIT_SQL_DIR: every *.sqlite under it is allowed by file stem
    sql_demos: Path | None = None  # PRUNEKIT_SQL_DEMOS: a Spider folder (train_spider_slim.json) for demonstrations
    cache_dir: Path = Field(default_factory=default_cache_dir)

    def vector_store_location(self) -> dict[str, object]:
        """Keyword arguments for `VectorStore`: the server when configured, else the local folder."""
        if self.qdrant_url:
            key = self.qdrant_api_key.get_secret_value() if self.qdrant_api_key else None
            return {"url": self.qdrant_url, "api_key": key}
        return {"path": self.data_dir / "qdrant"}

    def database_registry(self) -> DatabaseRegistry:
        return DatabaseRegistry(parse_database_list(self.sql_databases), self.sql_dir)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value
