"""Service and CLI settings, read from `PRUNEKIT_*` environment variables (and a `.env` file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from prunekit.app.api.middleware import host_allow_list
from prunekit.app.databases import DatabaseRegistry, parse_database_list
from prunekit.decoding.backends.embedded import default_cache_dir

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
    # Who may call: `Host` names (default: the loopback names when bound to one, else any) and web page origins
    # besides the service's own page (default: none). `*` allows any. See the README's Security section.
    allowed_hosts: Annotated[list[str], NoDecode] = []  # PRUNEKIT_ALLOWED_HOSTS=api.example.com,localhost
    allowed_origins: Annotated[list[str], NoDecode] = []  # PRUNEKIT_ALLOWED_ORIGINS=https://app.example.com
    # Admission control, per route (each chat model, /v1/prune, /v1/sql, /v1/agents): requests running at once,
    # requests waiting for a place, and how long one may wait; past either, 503 with Retry-After.
    max_concurrent_requests: int = Field(8, ge=1, le=1024)
    max_waiting_requests: int = Field(32, ge=0, le=100_000)
    queue_timeout_s: float = Field(30.0, gt=0.0, le=3600.0)
    max_body_bytes: int = 1_000_000
    max_tokens_limit: int = 2048  # the largest max_tokens a client may ask for
    # PRUNEKIT_REPETITION_PENALTY: the loop guard of chat on the in-process backends (`decoding.backends.penalties`),
    # used when a request sets no `repetition_penalty` and asks for no `format`; 1 turns it off. A remote server
    # (backend openai) keeps its own default.
    repetition_penalty: float = Field(1.1, gt=0.0, le=2.0)
    rate_limit_per_minute: int = 600  # per API key (or client address); 0 turns it off
    code_execution: Literal["off", "sandbox"] = "off"  # PRUNEKIT_CODE_EXECUTION: run agents' code (bwrap)

    qdrant_url: str | None = None  # PRUNEKIT_QDRANT_URL: a Qdrant server (default: on disk in data_dir/qdrant)
    qdrant_api_key: SecretStr | None = None
    database_url: SecretStr | None = None  # PRUNEKIT_DATABASE_URL: PostgreSQL for threads (default: SQLite)
    data_dir: Path = Path("data")
    rag_collection: str = "default"  # PRUNEKIT_RAG_COLLECTION: used when a request names none
    sql_databases: str = ""  # PRUNEKIT_SQL_DATABASES=name=/path/a.sqlite,...: the allow-list for prunekit-sql
    sql_dir: Path | None = None  # PRUNEKIT_SQL_DIR: every *.sqlite under it is allowed by file stem
    sql_demos: Path | None = None  # PRUNEKIT_SQL_DEMOS: a Spider folder (train_spider_slim.json) for demonstrations
    # PRUNEKIT_SQL_ADAPTER: the LoRA adapter the SQL agent's embedded model runs with: shipped (LearNAT-trained),
    # none (the base model), or a peft adapter folder. A model of one's own (path, openai) runs as it is.
    sql_adapter: str = "shipped"
    cache_dir: Path = Field(default_factory=default_cache_dir)

    def vector_store_location(self) -> dict[str, object]:
        """Keyword arguments for `VectorStore`: the server when configured, else the local folder."""
        if self.qdrant_url:
            key = self.qdrant_api_key.get_secret_value() if self.qdrant_api_key else None
            return {"url": self.qdrant_url, "api_key": key}
        return {"path": self.data_dir / "qdrant"}

    def database_registry(self) -> DatabaseRegistry:
        return DatabaseRegistry(parse_database_list(self.sql_databases), self.sql_dir)

    def host_allow_list(self) -> list[str]:
        """The `Host` names served: as configured, else the loopback names when bound to loopback, else any."""
        return host_allow_list(self.host, self.allowed_hosts)

    @field_validator("api_keys", "allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value
