"""Request and response bodies of the OpenAI-compatible API (the subset prunekit serves)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prunekit.decoding.structured.tools import MAX_TOOLS, tool_calls_text, tool_result_text
from prunekit.decoding.types import MAX_TOP_LOGPROBS, SEED_MAX, SEED_MIN

__all__ = [
    "THREAD_ID_PATTERN",
    "UNSUPPORTED_FIELDS",
    "AgentsRequest",
    "ChatCompletionRequest",
    "ChatMessageIn",
    "EmbeddingsRequest",
    "PruneItem",
    "PruneRequest",
    "RerankRequest",
    "SqlRequest",
    "StreamOptions",
]

THREAD_ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    """One message of a chat completion request. An assistant turn may carry `tool_calls` (then `content` may be
    null), and a `role: "tool"` message carries a call's result; both are written into the conversation the way
    the model reads them (`decoding.structured.tools`)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: Annotated[list[dict[str, Any]], Field(max_length=MAX_TOOLS)] | None = None
    tool_call_id: Annotated[str, Field(max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")] | None = None

    @model_validator(mode="after")
    def _content_or_calls(self) -> ChatMessageIn:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a {self.role} message needs content (only an assistant's tool calls may stand alone)")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    def as_message(self) -> dict[str, str]:
        if self.role == "tool":
            return {"role": "user", "content": tool_result_text(self.text(), self.tool_call_id)}
        if self.tool_calls:
            return {"role": "assistant", "content": self.text() + tool_calls_text(self.tool_calls)}
        # OpenAI's newer "developer" role plays the part of "system" for chat templates.
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": self.text()}


def _set(value: Any) -> bool:
    return value is not None and value != [] and value != {}


# OpenAI chat-completion fields prunekit does not implement, each with the test of whether a value asks for
# something. Such a request is a 400 that names the field: ignored, a client would believe it had what it asked
# for. Values that ask for nothing (`modalities: ["text"]`) pass. Harmless fields (`user`, `metadata`, `store`,
# ...) are ignored. The legacy `functions` / `function_call` pair is refused with a pointer to `tools`.
UNSUPPORTED_FIELDS: dict[str, Any] = {
    "functions": _set,
    "function_call": lambda v: _set(v) and v not in ("none", "auto"),
    "logit_bias": _set,
    "audio": _set,
    "modalities": lambda v: _set(v) and v != ["text"],
    "prediction": _set,
    "web_search_options": _set,
}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """POST /v1/chat/completions. Values out of range are a 400; so is an OpenAI field prunekit does not implement
    (`unsupported_fields`); other unknown fields are ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: Annotated[list[ChatMessageIn], Field(min_length=1, max_length=256)]
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    # vLLM's extra field (CTRL's penalty over the answer's last 64 tokens, `decoding.backends.penalties`).
    # None: the server's loop guard (PRUNEKIT_REPETITION_PENALTY) on free text; 1 turns it off.
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0)
    n: Literal[1] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    # Structured outputs and tool calls, enforced while decoding (`decoding.structured`); checked in
    # `app.graphs.params.output_constraint`, so the shapes here stay loose and the errors specific.
    response_format: dict[str, Any] | None = None
    tools: Annotated[list[dict[str, Any]], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    # prunekit extensions. `format`: a format spec the answer must follow (Deco-G guidance on the local
    # backends), e.g. "pivot:<free>The answer is <int>" or 'json:{"answer": "string"}'.
    format: str | None = Field(None, min_length=1, max_length=2000)
    format_method: Literal["decog", "decog_pruned", "hard_mask"] = "decog"
    # Keep the conversation server-side; send only the new messages each time.
    thread_id: str | None = Field(None, min_length=1, max_length=128, pattern=THREAD_ID_PATTERN)
    # Route extensions: the RAG collection (default PRUNEKIT_RAG_COLLECTION), the SQL database (a name on the
    # allow-list), the agent pool's domain; `progress` adds progress chunks to a stream (see the README).
    collection: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    database: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    domain: Literal["math", "general", "code"] | None = None
    progress: bool = False

    @field_validator("stop")
    @classmethod
    def _non_empty_stops(cls, value: Any) -> Any:
        stops = [value] if isinstance(value, str) else value or []
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty strings")
        return value

    def unsupported_fields(self) -> list[str]:
        """The OpenAI fields of this request that ask for something prunekit does not do (module doc)."""
        extra = self.model_extra or {}
        return [name for name, asks in UNSUPPORTED_FIELDS.items() if name in extra and asks(extra[name])]

    def stop_tuple(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class AgentsRequest(BaseModel):
    """POST /v1/agents: one task for an AGP-pruned agent team."""

    model_config = ConfigDict(extra="forbid")

    task: Annotated[str, Field(min_length=1, max_length=20_000)]
    domain: Literal["math", "general", "code"] = "math"
    context: Annotated[str, Field(max_length=50_000)] = ""
    choices: Annotated[list[str], Field(max_length=10)] = []


class SqlRequest(BaseModel):
    """POST /v1/sql: a question on a database named from the server's allow-list."""

    model_config = ConfigDict(extra="forbid")

    question: Annotated[str, Field(min_length=1, max_length=2_000)]
    database: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]


class PruneItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: Annotated[str, Field(min_length=1, max_length=2_000)]
    contexts: Annotated[list[Annotated[str, Field(max_length=20_000)]], Field(min_length=1, max_length=64)]
    titles: Annotated[list[str | None], Field(max_length=64)] | None = None


class PruneRequest(BaseModel):
    """POST /v1/prune: a batch of questions, each with its retrieved contexts."""

    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[PruneItem], Field(min_length=1, max_length=32)]
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    top_k: Annotated[int, Field(ge=1, le=64)] | None = None
    reorder: bool = False


# OpenAI's own per-request cap on inputs is 2048; each input here costs a MiniLM forward pass on the server's CPU.
MAX_EMBEDDING_INPUTS = 256
EmbeddingText = Annotated[str, Field(max_length=20_000)]  # far past what the encoder embeds: the token check says so


class EmbeddingsRequest(BaseModel):
    """POST /v1/embeddings, OpenAI's shape. `input`: a string or a list of strings. Token-id input (what OpenAI's
    tokenizer would produce) is accepted by the schema only to be refused with a message saying so
    (`app.api.embeddings`): prunekit's encoder has its own tokenizer."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1, max_length=128)]
    input: (
        EmbeddingText
        | Annotated[list[EmbeddingText], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
        | Annotated[list[int], Field(min_length=1, max_length=8192)]
        | Annotated[list[list[int]], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: Annotated[str, Field(max_length=256)] | None = None  # OpenAI's end-user id: accepted, not used


class RerankDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")  # Cohere-style objects may carry fields of their own

    text: Annotated[str, Field(max_length=20_000)]


class RerankRequest(BaseModel):
    """POST /v1/rerank: the common rerank format (Cohere's; Jina and text-embeddings-inference take it too)."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1, max_length=128)]
    query: Annotated[str, Field(min_length=1, max_length=2_000)]
    documents: Annotated[
        list[Annotated[str, Field(max_length=20_000)] | RerankDocument], Field(min_length=1, max_length=128)
    ]
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1  # prunekit's: how hard the documents are pruned
