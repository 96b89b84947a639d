"""The proxy's settings (`PRUNEKIT_PROXY_*` environment variables, or `prunekit proxy` options) and the options
one request may set in its `prunekit` extension field."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import regex
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from prunekit.app.api.middleware import host_allow_list
from prunekit.app.proxy.keep import KeepRules
from prunekit.decoding.errors import InvalidRequestError

__all__ = ["DEFAULT_THRESHOLD", "EXTENSION_FIELD", "Mode", "ProxySettings", "RequestOptions", "parse_options"]

# The proxy's operating point, one step leaner than the pruner's calibrated 0.1 (which removes about 55 % of the
# context of HotpotQA *training* questions): a proxy is there to cut the prompt a paid or busy upstream reads. Chosen
# on HotpotQA train only (300 questions, ten passages each): 0.1 -> 57 % of context tokens removed, evidence recall
# 0.954; 0.15 -> 69 % removed, recall 0.927; 0.2 -> 77 %, 0.886. `prunekit eval proxy --data .../train.jsonl
# --limit 40 --threshold 0.15` against llama-cpp-python's server on the embedded model: 61 % fewer prompt tokens,
# answer F1 +4.1 points (user message) and +0.2 (tool results) over the unpruned request.
DEFAULT_THRESHOLD = 0.15
EXTENSION_FIELD = "prunekit"
Mode = Literal["auto", "on", "off"]  # auto: prune when the break-even gate says it pays; on: always; off: never
_MODES = ("auto", "on", "off")
_OPTION_KEYS = frozenset({"context", "threshold", "top_k", "keep", "prune", "explain"})


class ProxySettings(BaseSettings):
    """Everything the proxy is configured with. `key_modes` switches pruning per API key (`sk-a=off,sk-b=on`): the
    key a client sends in `Authorization` picks the mode, before a request's own `prunekit.prune`."""

    model_config = SettingsConfigDict(env_prefix="PRUNEKIT_PROXY_", env_file=".env", extra="ignore")

    upstream: str = "http://127.0.0.1:8080/v1"  # PRUNEKIT_PROXY_UPSTREAM: the OpenAI-compatible base URL
    upstream_key: SecretStr | None = None  # sent to the upstream instead of the client's Authorization when set
    host: str = "127.0.0.1"
    port: int = Field(8100, ge=1, le=65535)
    mode: Mode = "auto"
    key_modes: Annotated[dict[str, Mode], NoDecode] = {}
    threshold: float = Field(DEFAULT_THRESHOLD, ge=0.0, le=1.0)
    min_context_tokens: int = Field(256, ge=0)  # the gate never prunes less context than this
    prune_timeout_s: float = Field(10.0, gt=0.0, le=600.0)  # past it (waiting included): forward unpruned
    max_body_bytes: int = Field(8_000_000, ge=1_000)
    max_messages: int = Field(1024, ge=1)
    max_passages: int = Field(512, ge=1)
    max_context_chars: int = Field(2_000_000, ge=1)
    connect_timeout_s: float = Field(10.0, gt=0.0)
    read_timeout_s: float = Field(600.0, gt=0.0)  # between two bytes of the upstream's answer
    max_concurrent_requests: int = Field(64, ge=1, le=10_000)  # upstream connections held at once
    rate_limit_per_minute: int = Field(0, ge=0)  # per client address; 0: off (the upstream enforces its own)
    allowed_hosts: Annotated[list[str], NoDecode] = []
    allowed_origins: Annotated[list[str], NoDecode] = []

    @field_validator("upstream")
    @classmethod
    def _check_upstream(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                f"upstream must be an http:// or https:// base URL such as http://host:8000/v1, got {value!r}"
            )
        return value.rstrip("/")

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("key_modes", mode="before")
    @classmethod
    def _split_modes(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs = [item.strip().rpartition("=") for item in value.split(",") if item.strip()]
        return {key.strip(): mode.strip() for key, _, mode in pairs}

    def host_allow_list(self) -> list[str]:
        """As the service's: the loopback names when bound to loopback, else any, unless configured."""
        return host_allow_list(self.host, self.allowed_hosts)

    def mode_for_key(self, token: str) -> Mode:
        """The pruning mode of the API key a client sent (compared in constant time), else the default."""
        sent = token.encode("latin-1", errors="replace")
        for key, mode in self.key_modes.items():
            if token and hmac.compare_digest(sent, key.encode()):
                return mode
        return self.mode


@dataclass(frozen=True)
class RequestOptions:
    mode: Mode
    threshold: float
    top_k: int | None
    keep: tuple[regex.Pattern[str], ...]
    explain: bool
    context: list[int | str] | None


def parse_options(raw: Any, settings: ProxySettings, key_mode: Mode) -> RequestOptions:
    """A request's `prunekit` object, checked; every bad value is a 400 that names it."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidRequestError('prunekit must be an object, e.g. {"threshold": 0.3, "top_k": 3}')
    unknown = set(raw) - _OPTION_KEYS
    if unknown:
        raise InvalidRequestError(f"prunekit has unknown fields {sorted(unknown)}; known: {sorted(_OPTION_KEYS)}")
    mode = _mode(raw.get("prune"), key_mode)
    threshold = raw.get("threshold", settings.threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
        raise InvalidRequestError(f"prunekit.threshold must be a number in [0, 1], got {threshold!r}")
    top_k = raw.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InvalidRequestError(f"prunekit.top_k must be a positive integer, got {top_k!r}")
    keep = raw.get("keep", [])
    if not isinstance(keep, list):
        raise InvalidRequestError("prunekit.keep must be a list of regular expressions")
    explain = raw.get("explain", False)
    if not isinstance(explain, bool):
        raise InvalidRequestError(f"prunekit.explain must be true or false, got {explain!r}")
    return RequestOptions(
        mode, float(threshold), top_k, KeepRules.compile(keep), explain, _context(raw.get("context"), settings)
    )


def _mode(value: Any, key_mode: Mode) -> Mode:
    """A request may switch pruning off, on, or back to the gate, unless its key has it off."""
    if value is None:
        return key_mode
    if value is True:
        value = "on"
    elif value is False:
        value = "off"
    if value not in _MODES:
        raise InvalidRequestError(f'prunekit.prune must be true, false or "auto", got {value!r}')
    return "off" if key_mode == "off" else value


def _context(value: Any, settings: ProxySettings) -> list[int | str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise InvalidRequestError("prunekit.context must be a non-empty list of message indices or exact strings")
    if len(value) > settings.max_passages:
        raise InvalidRequestError(f"prunekit.context has {len(value)} entries; the limit is {settings.max_passages}")
    for n, mark in enumerate(value):
        is_index = isinstance(mark, int) and not isinstance(mark, bool) and 0 <= mark < settings.max_messages
        if not is_index and not (isinstance(mark, str) and mark.strip()):
            raise InvalidRequestError(f"prunekit.context[{n}] must be a message index or a non-empty string")
    return list(value)
